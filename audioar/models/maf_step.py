"""The elementwise part of one MAF flow (affine MADE transform + batch norm) as one autograd node.

Per flow (``raw``, ``mean`` from the MADE, in its generation order; ``sort`` / ``unsort``
map between the data's feature order and that one)::

    log_scale = b tanh(raw / b)                 (soft clamp, written with a sigmoid)
    u = unsort((sort(x) - mean) * exp(-log_scale))          log-det  -sum(log_scale)
    y = (u - mu) / sqrt(var + eps) * exp(log_gamma) + beta
                                    log-det  sum(log_gamma - log(var + eps) / 2)

with ``mu, var`` the batch statistics (training) or the running ones (evaluation). Written
with autograd this is some 30 small tensor operations forward and as many backward; on a
CPU, with ``(batch, features)`` of a few thousand numbers, their dispatch costs more than
their arithmetic. :func:`affine_batch_norm` computes the same numbers with a hand-written
backward (about 15 operations each way). The reference is :meth:`MAF._affine` followed by
:class:`BatchNormBijector`; tests check that both agree, values and gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["affine_batch_norm"]

Reorder = Callable[[Tensor], Tensor]


def _forward(
    x: Tensor,
    params: Tensor,
    norm: tuple[Tensor, Tensor] | None,
    stats: tuple[Tensor, Tensor] | None,
    order: tuple[Reorder, Reorder],
    bound: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, tuple[Tensor, ...]]:
    """``y, log_det, batch mean, batch var`` and the tensors the backward pass needs."""
    sort, unsort = order
    mean, raw = params[..., 0], params[..., 1]
    sig = torch.sigmoid(raw * (2.0 / bound))
    log_scale = sig * (2.0 * bound) - bound
    inv_scale = torch.exp(-log_scale)
    us = (sort(x) - mean).mul_(inv_scale)
    log_det = log_scale.sum(1).neg_()
    u = unsort(us)
    if norm is None:  # no batch norm: the affine transform alone
        return u, log_det, None, None, (inv_scale, sig, us)
    log_gamma, beta = norm
    if stats is None:  # batch statistics
        mu = u.mean(0)
        centred = u - mu
        var = (centred * centred).mean(0)
    else:  # running statistics
        mu, var = stats
        centred = u - mu
    inv_std = (var + eps).rsqrt()
    scale = torch.exp(log_gamma) * inv_std
    y = torch.addcmul(beta, centred, scale)
    log_det += (log_gamma + inv_std.log()).sum()
    saved = (inv_scale, sig, us, centred, inv_std, scale)
    if stats is not None:
        return y, log_det, None, None, saved
    return y, log_det, mu, var, saved


class _AffineBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, params, log_gamma, beta, stats, order, bound, eps):  # noqa: ANN001, ANN205
        norm = (log_gamma, beta) if log_gamma is not None else None
        y, log_det, mu, var, saved = _forward(x, params, norm, stats, order, bound, eps)
        ctx.save_for_backward(*saved)
        ctx.norm = norm is not None
        ctx.batch_stats = stats is None
        ctx.order = order
        if mu is not None:
            ctx.mark_non_differentiable(mu, var)
        return y, log_det, mu, var

    @staticmethod
    def backward(ctx, grad_y, grad_log_det, _grad_mu, _grad_var):  # noqa: ANN001, ANN205
        sort, unsort = ctx.order
        grad_log_det = grad_log_det.unsqueeze(1)
        grad_gamma = grad_beta = None
        if ctx.norm:
            inv_scale, sig, us, centred, inv_std, scale = ctx.saved_tensors
            n = grad_y.shape[0]
            total = grad_log_det.sum()  # the norm's log-det is added to every row
            grad_beta = grad_y.sum(0)
            grad_yc = (grad_y * centred).sum(0)
            grad_gamma = grad_yc * scale + total
            grad_u = grad_y * scale
            if ctx.batch_stats:
                # Through mu and var (as in batch norm's backward), plus d log-det / d var.
                grad_u -= grad_beta * (scale / n)
                coef = (grad_yc * scale + total) * inv_std * inv_std / n
                grad_u -= centred * coef
        else:
            inv_scale, sig, us = ctx.saved_tensors
            grad_u = grad_y
        grad_us = sort(grad_u)
        grad_xs = grad_us * inv_scale
        # d/d log_scale of u = (x - mean) exp(-log_scale) is -u; the log-det adds -1.
        grad_log_scale = torch.addcmul(grad_log_det, grad_us, us).neg_()
        # d log_scale / d raw = 4 sig (1 - sig) for b tanh(raw / b) = 2b sig(2 raw / b) - b.
        grad_raw = grad_log_scale.mul_(sig - sig * sig).mul_(4.0)
        grad_params = torch.stack([grad_xs.neg(), grad_raw], dim=-1)
        return unsort(grad_xs), grad_params, grad_gamma, grad_beta, None, None, None, None


def _identity(x: Tensor) -> Tensor:
    return x


def affine_batch_norm(
    x: Tensor,
    params: Tensor,
    log_gamma: Tensor | None,
    beta: Tensor | None,
    stats: tuple[Tensor, Tensor] | None,
    bound: float,
    eps: float = 1e-5,
    order: tuple[Reorder, Reorder] = (_identity, _identity),
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Affine MADE transform then batch norm, in one autograd node.

    Args:
        x: ``(batch, features)`` flow input, in the data's feature order.
        params: ``(batch, features, 2)`` raw MADE outputs (mean, unclamped log-scale), in
            the MADE's generation order.
        log_gamma: ``(features,)`` batch-norm log-scale, or ``None`` for no batch norm.
        beta: ``(features,)`` batch-norm shift (``None`` with ``log_gamma``).
        stats: ``None`` to normalise with the batch statistics (training), or the running
            ``(mean, var)``, each ``(features,)``.
        bound: Soft bound of the MADE log-scales.
        eps: Batch-norm variance floor, default ``1e-5``.
        order: ``(sort, unsort)``: feature order -> generation order and back, on
            ``(batch, features)`` tensors (:meth:`MADE.to_generation_order` and
            :meth:`MADE.from_generation_order`); default: the identity.

    Returns:
        ``y`` ``(batch, features)`` in the feature order, ``log_det`` ``(batch,)`` =
        log|det dy/dx|, and the batch ``(mean, var)`` it normalised with (``(features,)``
        each, no gradient; both ``None`` without batch norm or when ``stats`` is given).
    """
    tensors = (x, params, log_gamma, beta)
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors):
        norm = (log_gamma, beta) if log_gamma is not None else None
        return _forward(x, params, norm, stats, order, bound, eps)[:4]
    return _AffineBatchNorm.apply(x, params, log_gamma, beta, stats, order, bound, eps)
