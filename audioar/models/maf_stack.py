"""A whole MAF density pass, every flow, as one autograd node in the ``(features, batch)`` layout.

Training a MAF runs, per flow, a masked MLP (three products for two hidden layers), the
affine transform with its soft-clamped log-scale, and batch norm; then it reorders the
features for the next flow. Written with autograd that is two nodes and some 60 small
tensor operations per flow each way, whose dispatch on a CPU costs about as much as their
arithmetic. Here the whole stack is one node with a hand-written backward:

* activations are kept transposed, ``(features, batch)``: each block of a masked product
  then reads and writes whole rows (see :func:`~audioar.layers.block_linear.mlp_forward_t`);
* each flow's affine transform and batch norm are computed in that flow's generation
  order (the batch-norm vectors are reordered instead of the activations), so between two
  flows the only data movement is one reordering (a flip for the default reversed orders);
* the log-determinant gradient is the same for every flow and enters each one directly.

Per flow ``t`` (``xs`` its input, in its generation order)::

    mean, raw = MADE(xs)                    log_scale = b tanh(raw / b) = 2b sigmoid(2 raw / b) - b
    us = (xs - mean) * exp(-log_scale)      log-det -sum(log_scale)
    y  = (us - mu) / sqrt(var + eps) * exp(log_gamma) + beta
                                            log-det sum(log_gamma - log(var + eps) / 2)

with ``mu, var`` the batch statistics (batch norm in training mode, which also updates the
running ones) or the running statistics (evaluation mode). The numbers are those of the
flow-by-flow path (:meth:`MAF._affine` and :class:`BatchNormBijector`, the reference);
tests check values and gradients against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audioar.layers.block_linear import mlp_backward_t, mlp_forward_t
from audioar.models.made import MADE

__all__ = ["maf_stack"]

_SIMPLE_ORDERS = ("natural", "reverse")


def _sort(made: MADE, h: Tensor) -> Tensor:
    """Rows (features) in the data's order -> ``made``'s generation order."""
    if made._order_kind == "natural":
        return h
    if made._order_kind == "reverse":
        return h.flip(0)
    return h.index_select(0, made.perm)


def _unsort(made: MADE, h: Tensor) -> Tensor:
    """Inverse of :func:`_sort`."""
    if made._order_kind == "natural":
        return h
    if made._order_kind == "reverse":
        return h.flip(0)
    return h.index_select(0, made.inv_perm)


def _reorder(source: MADE, target: MADE, h: Tensor) -> Tensor:
    """Rows in ``source``'s generation order -> ``target``'s."""
    a, b = source._order_kind, target._order_kind
    if a in _SIMPLE_ORDERS and b in _SIMPLE_ORDERS:
        return h if a == b else h.flip(0)
    return _sort(target, _unsort(source, h))


@dataclass(frozen=True)
class _Stack:
    """What the node needs besides its tensor inputs (modules are read, not differentiated)."""

    mades: Sequence[MADE]
    norms: Sequence[nn.Module]  # BatchNormBijector per flow, or empty
    bound: float
    activation: str
    batch_stats: bool  # batch norm in training mode


def _flow_forward(
    stack: _Stack, t: int, xs: Tensor, context: Tensor | None, log_det: Tensor
) -> tuple[Tensor, Tensor, tuple]:
    """Flow ``t`` on ``xs`` ``(features, batch)``: ``y``, its batch-norm log-det, saved tensors.

    Adds the affine part of the log-det to ``log_det`` ``(batch,)`` in place.
    """
    made = stack.mades[t]
    n = xs.shape[1]
    views = made.block_views()
    inp = torch.cat([context, xs]) if context is not None else xs
    values = mlp_forward_t(inp, views, stack.activation)
    out = values.pop().view(made.features, 2, n)
    bound = stack.bound
    sig = torch.sigmoid(out[:, 1] * (2.0 / bound))
    log_scale = torch.mul(sig, 2.0 * bound).sub_(bound)
    inv_scale = torch.neg(log_scale).exp_()
    us = torch.sub(xs, out[:, 0]).mul_(inv_scale)
    log_det.sub_(log_scale.sum(0))
    if not stack.norms:
        return us, xs.new_zeros(()), (values, sig, inv_scale, us)
    norm = stack.norms[t]
    log_gamma = _sort(made, norm.log_gamma.detach()).unsqueeze(1)
    beta = _sort(made, norm.beta.detach()).unsqueeze(1)
    if stack.batch_stats:
        mu = us.mean(1, keepdim=True)
        centred = us - mu
        var = (centred * centred).mean(1, keepdim=True)
        norm.running_mean.lerp_(_unsort(made, mu.squeeze(1)), norm.momentum)
        norm.running_var.lerp_(_unsort(made, var.squeeze(1)), norm.momentum)
    else:
        centred = us - _sort(made, norm.running_mean).unsqueeze(1)
        var = _sort(made, norm.running_var).unsqueeze(1)
    inv_std = var.add(norm.eps).rsqrt_()
    scale = torch.exp(log_gamma).mul_(inv_std)
    y = torch.addcmul(beta, centred, scale)
    norm_log_det = log_gamma.sum() + inv_std.log().sum()
    return y, norm_log_det, (values, sig, inv_scale, us, centred, inv_std, scale)


def _flow_backward(
    stack: _Stack,
    t: int,
    grad_y: Tensor,
    grad_log_det: Tensor,
    saved: tuple,
    input_grad: bool,
) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
    """Backward of flow ``t``: gradient of its input ``xs`` (and of the context) and its params.

    Args:
        grad_y: ``(features, batch)`` gradient of the flow's output, its generation order.
        grad_log_det: ``(batch,)`` gradient of the total log-det.
        saved: The tensors :func:`_flow_forward` saved.
        input_grad: Whether the MADE's input gradient is needed (false only for the first
            flow when neither the data nor the context needs a gradient).

    Returns:
        ``grad_xs`` ``(features, batch)``, ``grad_context`` ``(context, batch)`` or ``None``,
        and the parameter gradients in :func:`_flow_params` order.
    """
    made = stack.mades[t]
    n = grad_y.shape[1]
    values, sig, inv_scale, us = saved[:4]
    norm_grads: list[Tensor | None] = []
    if stack.norms:
        centred, inv_std, scale = saved[4:]
        total = grad_log_det.sum()  # the norm's log-det is added to every row
        grad_beta = grad_y.sum(1, keepdim=True)
        grad_log_gamma = (grad_y * centred).sum(1, keepdim=True).mul_(scale).add_(total)
        grad_u = grad_y * scale
        if stack.batch_stats:
            # Through mu and var, as in batch norm's backward, plus d log-det / d var.
            grad_u.sub_(grad_beta * scale / n)
            grad_u.addcmul_(centred, grad_log_gamma * inv_std * inv_std, value=-1.0 / n)
        norm_grads = [_unsort(made, grad_log_gamma.squeeze(1)), _unsort(made, grad_beta.squeeze(1))]
    else:
        grad_u = grad_y
    grad_xs = grad_u * inv_scale
    grad_out = grad_u.new_empty(made.features, 2, n)
    torch.neg(grad_xs, out=grad_out[:, 0])
    # log_scale: us = (xs - mean) exp(-log_scale) gives -grad_u us, the log-det -1 per row;
    # d log_scale / d raw = 4 sig (1 - sig).
    grad_log_scale = torch.addcmul(grad_log_det.unsqueeze(0), grad_u, us)
    torch.mul(grad_log_scale, torch.mul(sig, sig).sub_(sig), out=grad_out[:, 1]).mul_(4.0)
    grad_in, grad_w, grad_b = mlp_backward_t(
        grad_out.view(-1, n), values, made.block_views(), stack.activation, input_grad
    )
    grad_context = None
    if grad_in is not None:
        c = made.context_features
        grad_context = grad_in[:c] if c else None
        grad_xs.add_(grad_in[c:])
    params = [g for pair in zip(grad_w, grad_b, strict=True) for g in pair]
    return grad_xs, grad_context, params + norm_grads


def _flow_params(made: MADE, norm: nn.Module | None) -> list[Tensor]:
    params = [p for layer in made.layers for p in (layer.weight, layer.bias)]
    return params + ([norm.log_gamma, norm.beta] if norm is not None else [])


class _MAFStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, context, stack, *params):  # noqa: ANN001, ANN205
        mades = stack.mades
        log_det = x.new_zeros(x.shape[0])
        norm_log_det = x.new_zeros(())
        context_t = context.t().contiguous() if context is not None else None
        h = _sort(mades[0], x.t()).contiguous()
        saved = []
        for t, made in enumerate(mades):
            y, nld, flow_saved = _flow_forward(stack, t, h, context_t, log_det)
            norm_log_det += nld
            saved.append(flow_saved)
            h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
        ctx.save_for_backward(*params)  # only for autograd's in-place modification check
        ctx.stack = stack
        ctx.flows = saved
        return h.t(), log_det.add_(norm_log_det)

    @staticmethod
    def backward(ctx, grad_z, grad_log_det):  # noqa: ANN001, ANN205
        stack = ctx.stack
        mades = stack.mades
        saved = ctx.flows
        _ = ctx.saved_tensors  # raises if a parameter was changed in place since forward
        grad_y = _sort(mades[-1], grad_z.t()).contiguous()
        input_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_context = None
        per_flow = []
        for t in reversed(range(len(mades))):
            grad_xs, grad_c, grads = _flow_backward(
                stack, t, grad_y, grad_log_det, saved[t], t > 0 or input_grad
            )
            per_flow.append(grads)
            if grad_c is not None and ctx.needs_input_grad[1]:
                grad_context = grad_c if grad_context is None else grad_context + grad_c
            if t > 0:
                grad_y = _reorder(mades[t], mades[t - 1], grad_xs)
        grad_x = _unsort(mades[0], grad_xs).t() if ctx.needs_input_grad[0] else None
        grad_context = grad_context.t() if grad_context is not None else None
        params = [g for grads in reversed(per_flow) for g in grads]
        return grad_x, grad_context, None, *params


def maf_stack(
    x: Tensor,
    context: Tensor | None,
    mades: Sequence[MADE],
    norms: Sequence[nn.Module],
    bound: float,
) -> tuple[Tensor, Tensor]:
    """Every flow of a MAF (affine MADE transforms, batch norm, reordering) as one node.

    Args:
        x: ``(batch, features)`` data.
        context: ``(batch, context_features)`` (already checked and cast) or ``None``.
        mades: The flows' Gaussian MADEs, all with the same activation (one of
            :data:`~audioar.layers.block_linear.FUSED_ACTIVATIONS`) and no dropout in use.
        norms: A :class:`~audioar.models.maf.BatchNormBijector` per flow (all in training
            mode, or all in evaluation mode), or empty for none.
        bound: Soft bound of the MADE log-scales.

    Returns:
        ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|, as
        :meth:`MAF.forward` defines them; in training mode the running statistics of
        ``norms`` are updated.
    """
    stack = _Stack(
        mades=list(mades),
        norms=list(norms),
        bound=bound,
        activation=mades[0].activation,
        batch_stats=bool(norms) and norms[0].training,
    )
    params = [p for t, made in enumerate(mades) for p in _flow_params(made, _at(norms, t))]
    return _MAFStack.apply(x, context, stack, *params)


def _at(norms: Sequence[nn.Module], t: int) -> nn.Module | None:
    return norms[t] if norms else None
