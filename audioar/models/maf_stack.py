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
* the log-determinant gradient is the same for every flow and enters each one directly;
* the weight gradients wait until the backward pass has reached the first flow: when all
  MADEs share their masks (equal hidden degrees, the default) each weight block of all
  flows is then one batched product, which keeps both cores of a small CPU on whole
  products; all weight and bias gradients are views of one tensor, one allocation per
  step instead of one per layer (large blocks freed together at every step can make the C
  allocator return their pages to the system and fault them back in; measured per step:
  0-1,300 page faults this way, 0-5,900 with one tensor per layer, depending on the
  process's history).

Without autograd (evaluation, scoring) nothing is kept, tanh MADEs run on refolded
weights (:func:`~audioar.layers.block_linear.tanh_folded_views`) and batch norm is one
cached affine map (:meth:`BatchNormBijector.frozen`).

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

from audioar.layers.block_linear import (
    BlockViews,
    block_weight_grads_t,
    mlp_forward_t,
    mlp_input_grads_t,
    tanh_folded_mlp_t,
)
from audioar.models.made import MADE

__all__ = ["maf_stack"]

_SIMPLE_ORDERS = ("natural", "reverse")


def _sort(made: MADE, h: Tensor) -> Tensor:
    """Rows (features) in the data's order -> ``made``'s generation order."""
    return made.to_generation_order(h, dim=0)


def _unsort(made: MADE, h: Tensor) -> Tensor:
    """Inverse of :func:`_sort`."""
    return made.from_generation_order(h, dim=0)


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
    views: Sequence[Sequence[BlockViews]]  # each MADE's block views, read once per call
    norms: Sequence[nn.Module]  # BatchNormBijector per flow, or empty
    bound: float
    activation: str
    batch_stats: bool  # batch norm in training mode
    dropout: float  # dropout probability in use on the MADEs' hidden units (0 in evaluation)
    shared_masks: bool  # every MADE has the same blocks and masks (batched weight gradients)


def _flow_forward(
    stack: _Stack,
    t: int,
    xs: Tensor,
    context: Tensor | None,
    log_det: Tensor,
    inputs: Sequence[Tensor] | None,
) -> tuple[Tensor, Tensor, tuple]:
    """Flow ``t`` on ``xs`` ``(features, batch)``: ``y``, its batch-norm log-det, saved tensors.

    Adds the affine part of the log-det to ``log_det`` ``(batch,)`` in place. ``inputs``
    (for autograd) are ``(units, batch)`` tensors to keep each MADE layer's input in;
    ``None`` (no autograd) saves nothing and runs batch norm in evaluation as one cached
    affine map.
    """
    made = stack.mades[t]
    n = xs.shape[1]
    c = made.context_features
    views = stack.views[t] if stack.views else []
    values: list[Tensor] = []
    keeps = None
    if stack.dropout > 0:  # drawn (batch, units) like F.dropout: the same draws as the reference
        p = stack.dropout
        keeps = [
            xs.new_empty(n, v.out_features).bernoulli_(1 - p).div_(1 - p).t() for v in views[:-1]
        ]
    if inputs is not None:
        inp = inputs[0]
        if context is not None:
            inp[:c].copy_(context)
        xs = inp[c:].copy_(xs)
        values = mlp_forward_t(inp, views, stack.activation, inputs[1:], keeps)
        out = values.pop()
    else:
        inp = torch.cat([context, xs]) if context is not None else xs
        if stack.activation == "tanh" and keeps is None:  # sigmoid only, refolded weights
            out = tanh_folded_mlp_t(inp, made._folded_views())
        else:
            out = mlp_forward_t(inp, views, stack.activation, None, keeps)[-1]
    out = out.view(made.features, 2, n)
    bound = stack.bound
    sig = torch.sigmoid(out[:, 1] * (2.0 / bound))
    log_scale = torch.mul(sig, 2.0 * bound).sub_(bound)
    inv_scale = torch.neg(log_scale).exp_()
    us = torch.sub(xs, out[:, 0]).mul_(inv_scale)
    log_det.sub_(log_scale.sum(0))
    if not stack.norms:
        return us, xs.new_zeros(()), (values, keeps, sig, inv_scale, us)
    norm = stack.norms[t]
    if inputs is None and not stack.batch_stats:
        scale, shift, norm_log_det = norm.frozen()
        y = torch.addcmul(_sort(made, shift).unsqueeze(1), us, _sort(made, scale).unsqueeze(1))
        return y, norm_log_det, ()
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
    return y, norm_log_det, (values, keeps, sig, inv_scale, us, centred, inv_std, scale)


def _layer_buffers(stack: _Stack, n: int, like: Tensor, inputs: bool) -> list[Tensor]:
    """Per MADE layer, ``(flows, units, n)`` for every flow's layer inputs (or output grads)."""
    views = stack.views[0]
    sizes = [v.in_features if inputs else v.out_features for v in views]
    return [like.new_empty(len(stack.mades), size, n) for size in sizes]


def _stack_forward(
    x: Tensor, context: Tensor | None, stack: _Stack, save: bool
) -> tuple[Tensor, Tensor, list[tuple], list[Tensor]]:
    """``z`` ``(batch, features)``, ``log_det`` ``(batch,)``, each flow's saved tensors, and
    the ``(flows, units, batch)`` inputs of every MADE layer (when ``save``)."""
    mades = stack.mades
    log_det = x.new_zeros(x.shape[0])
    norm_log_det = x.new_zeros(())
    context_t = context.t().contiguous() if context is not None else None
    h = _sort(mades[0], x.t()).contiguous()
    layer_inputs = _layer_buffers(stack, x.shape[0], x, inputs=True) if save else []
    saved = []
    for t, made in enumerate(mades):
        inputs = [buffer[t] for buffer in layer_inputs] if save else None
        y, nld, flow_saved = _flow_forward(stack, t, h, context_t, log_det, inputs)
        norm_log_det += nld
        saved.append(flow_saved)
        h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
    return h.t().contiguous(), log_det.add_(norm_log_det), saved, layer_inputs


def _flow_backward(
    stack: _Stack,
    t: int,
    grad_y: Tensor,
    grad_log_det: Tensor,
    saved: tuple,
    input_grad: bool,
    grads: Sequence[Tensor],
) -> tuple[Tensor, Tensor | None, list[Tensor]]:
    """Backward of flow ``t`` up to its MADE's layer outputs (weight gradients come later).

    Args:
        grad_y: ``(features, batch)`` gradient of the flow's output, its generation order.
        grad_log_det: ``(batch,)`` gradient of the total log-det.
        saved: The tensors :func:`_flow_forward` saved.
        input_grad: Whether the MADE's input gradient is needed (false only for the first
            flow when neither the data nor the context needs a gradient).
        grads: Per MADE layer, ``(units, batch)``, filled with the gradient of its output.

    Returns:
        ``grad_xs`` ``(features, batch)``, ``grad_context`` ``(context, batch)`` or ``None``,
        and the batch-norm parameter gradients (``log_gamma``, ``beta``; none without).
    """
    made = stack.mades[t]
    n = grad_y.shape[1]
    values, keeps, sig, inv_scale, us = saved[:5]
    norm_grads: list[Tensor] = []
    if stack.norms:
        centred, inv_std, scale = saved[5:]
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
    grad_out = grads[-1].view(made.features, 2, n)
    torch.neg(grad_xs, out=grad_out[:, 0])
    # log_scale: us = (xs - mean) exp(-log_scale) gives -grad_u us, the log-det -1 per row;
    # d log_scale / d raw = 4 sig (1 - sig).
    grad_log_scale = torch.addcmul(grad_log_det.unsqueeze(0), grad_u, us)
    torch.mul(grad_log_scale, torch.mul(sig, sig).sub_(sig), out=grad_out[:, 1]).mul_(4.0)
    grad_in = mlp_input_grads_t(
        grads, values, stack.views[t], stack.activation, input_grad, keeps
    )
    grad_context = None
    if grad_in is not None:
        c = made.context_features
        grad_context = grad_in[:c] if c else None
        grad_xs.add_(grad_in[c:])
    return grad_xs, grad_context, norm_grads


def _weight_grads(stack: _Stack, grads: list[Tensor], inputs: list[Tensor]) -> list[list[Tensor]]:
    """Every flow's MADE parameter gradients, in :func:`_flow_params` order.

    Per flow ``[blocks of w_1..., b_1, ..., blocks of w_L..., b_L]``, all views of one
    tensor (see the module notes); ``grads`` and ``inputs`` are the ``(flows, units, batch)``
    layer output gradients and inputs. With shared masks each stored block of all flows is
    one contiguous ``(flows, rows, col_end)`` tensor, filled by one batched product.
    """
    mades = stack.mades
    flows = len(mades)
    layers = stack.views
    shapes = [
        [[(r1 - r0, c1) for r0, r1, _, c1 in layer.blocks] for layer in flow_layers]
        for flow_layers in layers
    ]
    if stack.shared_masks:  # block-major: flows side by side within each block
        sizes = [flows * r * c for layer in shapes[0] for r, c in layer]
    else:
        sizes = [r * c for flow_shapes in shapes for layer in flow_shapes for r, c in layer]
    sizes += [flows * layer.out_features for layer in layers[0]]
    flat = list(grads[0].new_empty(sum(sizes)).split(sizes))
    biases = [
        f.view(flows, v.out_features) for f, v in zip(flat[-len(grads) :], layers[0], strict=True)
    ]
    for g, b in zip(grads, biases, strict=True):
        torch.sum(g, 2, out=b)
    weights: list[list[list[Tensor]]] = []  # [flow][layer][block]
    if stack.shared_masks:
        chunks = iter(flat)
        per_layer = []
        for i, layer_shapes in enumerate(shapes[0]):
            outs = [next(chunks).view(flows, r, c) for r, c in layer_shapes]
            per_layer.append(block_weight_grads_t(grads[i], inputs[i], layers[0][i], outs))
        weights = [[[w[t] for w in blocks] for blocks in per_layer] for t in range(flows)]
    else:
        chunks = iter(flat)
        for t in range(flows):
            flow_weights = []
            for i, layer_shapes in enumerate(shapes[t]):
                outs = [next(chunks).view(r, c) for r, c in layer_shapes]
                flow_weights.append(
                    block_weight_grads_t(grads[i][t], inputs[i][t], layers[t][i], outs)
                )
            weights.append(flow_weights)
    return [
        [g for blocks, b in zip(weights[t], biases, strict=True) for g in (*blocks, b[t])]
        for t in range(flows)
    ]


def _flow_params(made: MADE, norm: nn.Module | None) -> list[Tensor]:
    params = [p for layer in made.layers for p in (*layer.stored_weights(), layer.bias)]
    return params + ([norm.log_gamma, norm.beta] if norm is not None else [])


class _MAFStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, context, stack, *params):  # noqa: ANN001, ANN205
        z, log_det, saved, layer_inputs = _stack_forward(x, context, stack, save=True)
        ctx.save_for_backward(*params)  # only for autograd's in-place modification check
        ctx.stack = stack
        ctx.flows = saved
        ctx.layer_inputs = layer_inputs
        return z, log_det

    @staticmethod
    def backward(ctx, grad_z, grad_log_det):  # noqa: ANN001, ANN205
        stack = ctx.stack
        mades = stack.mades
        saved = ctx.flows
        _ = ctx.saved_tensors  # raises if a parameter was changed in place since forward
        grad_y = _sort(mades[-1], grad_z.t()).contiguous()
        input_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_context = None
        grads = _layer_buffers(stack, grad_z.shape[0], grad_z, inputs=False)
        norm_grads = []
        for t in reversed(range(len(mades))):
            grad_xs, grad_c, flow_norm_grads = _flow_backward(
                stack,
                t,
                grad_y,
                grad_log_det,
                saved[t],
                t > 0 or input_grad,
                [g[t] for g in grads],
            )
            norm_grads.append(flow_norm_grads)
            if grad_c is not None and ctx.needs_input_grad[1]:
                grad_context = grad_c if grad_context is None else grad_context + grad_c
            if t > 0:
                grad_y = _reorder(mades[t], mades[t - 1], grad_xs)
        grad_x = _unsort(mades[0], grad_xs).t() if ctx.needs_input_grad[0] else None
        grad_context = grad_context.t() if grad_context is not None else None
        made_grads = _weight_grads(stack, grads, ctx.layer_inputs)
        params = [
            g
            for flow_grads, flow_norm in zip(made_grads, reversed(norm_grads), strict=True)
            for g in flow_grads + flow_norm
        ]
        return grad_x, grad_context, None, *params


def maf_stack(
    x: Tensor,
    context: Tensor | None,
    mades: Sequence[MADE],
    norms: Sequence[nn.Module],
    bound: float,
    shared_masks: bool = False,
) -> tuple[Tensor, Tensor]:
    """Every flow of a MAF (affine MADE transforms, batch norm, reordering) as one node.

    Args:
        x: ``(batch, features)`` data.
        context: ``(batch, context_features)`` (already checked and cast) or ``None``.
        mades: The flows' Gaussian MADEs, all with the same activation (one of
            :data:`~audioar.layers.block_linear.FUSED_ACTIVATIONS`) and dropout, all in the
            same mode.
        norms: A :class:`~audioar.models.maf.BatchNormBijector` per flow (all in training
            mode, or all in evaluation mode), or empty for none.
        bound: Soft bound of the MADE log-scales.
        shared_masks: Whether every MADE has the same masks (then the weight gradients of
            all flows are computed together, one batched product per block).

    Returns:
        ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|, as
        :meth:`MAF.forward` defines them; in training mode the running statistics of
        ``norms`` are updated.
    """
    params = [p for t, made in enumerate(mades) for p in _flow_params(made, _at(norms, t))]
    tensors = [x, context, *params]
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    dropout = mades[0].dropout if mades[0].training else 0.0
    activation = mades[0].activation
    folded = not grad and activation == "tanh" and dropout == 0  # no block views needed
    stack = _Stack(
        mades=list(mades),
        views=[] if folded else [made.block_views() for made in mades],
        norms=list(norms),
        bound=bound,
        activation=activation,
        batch_stats=bool(norms) and norms[0].training,
        dropout=dropout,
        shared_masks=shared_masks,
    )
    if not grad:
        with torch.no_grad():
            z, log_det, _, _ = _stack_forward(x, context, stack, save=False)
        return z, log_det
    return _MAFStack.apply(x, context, stack, *params)


def _at(norms: Sequence[nn.Module], t: int) -> nn.Module | None:
    return norms[t] if norms else None
