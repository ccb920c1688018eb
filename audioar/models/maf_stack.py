"""A whole MAF density pass, every flow, as one autograd node in the ``(features, batch)`` layout.

The arithmetic of the MAF's fast path (:class:`~audioar.models.maf_fast.MAFFastPath` holds
what it keeps between calls and calls :func:`maf_stack`). Training a MAF runs, per flow, a
masked MLP (three products for two hidden layers), the affine transform with its
soft-clamped log-scale, and batch norm; then it reorders the features for the next flow.
Written with autograd that is two nodes and some 60 small tensor operations per flow each
way, whose dispatch on a CPU costs about as much as their arithmetic. Here the whole stack
is one node with a hand-written backward:

* activations are kept transposed, ``(features, batch)``: each block of a masked product
  then reads and writes whole rows (see :func:`~audioar.layers.block_linear.mlp_forward_t`);
* each flow's affine transform and batch norm are computed in that flow's generation
  order (the batch-norm vectors are reordered instead of the activations), so between two
  flows the only data movement is one reordering (a flip for the default reversed orders);
* what batch norm needs of every flow is prepared once per call, as ``(flows, features)``
  rows reordered by one gather: the scales and shifts, the statistics (and, in training,
  one update of all running statistics), the log-det, the parameter gradients;
* the log-determinant gradient is the same for every flow and enters each one directly;
  so does the sum the batch norms' log-dets need;
* the weight gradients wait until the backward pass has reached the first flow: when all
  MADEs share their masks (equal hidden degrees, the default) their weight blocks are
  stacked, ``(flows, rows, cols)`` per block, and each stack's gradient is one batched
  product, which keeps both cores of a small CPU on whole products.

Without autograd (evaluation, scoring) nothing is kept: the MADEs run on the same block
views as training; each batch norm, an affine map then, is folded into its flow's affine
transform (:class:`Evaluation`), and so is a tanh's ``2 sigmoid(2z) - 1`` into the next
layer's product and bias.

Large per-call tensors come from a :class:`BufferPool` and go back to it when the call
(evaluation, the backward pass) or the graph that saved them is done: steps then write
into the same memory instead of asking the allocator for megabytes anew.

Per flow ``t`` (``xs`` its input, in its generation order)::

    mean, raw = MADE(xs)                    log_scale = b tanh(raw / b) = 2b sigmoid(2 raw / b) - b
    us = (xs - mean) * exp(-log_scale)      log-det -sum(log_scale)
    y  = (us - mu) / sqrt(var + eps) * exp(log_gamma) + beta
                                            log-det sum(log_gamma - log(var + eps) / 2)

with ``mu, var`` the batch statistics (batch norm in training mode, which also updates the
running ones) or the running statistics (evaluation mode). The numbers are those of the
flow-by-flow reference (:meth:`MAF.forward <audioar.models.MAF.forward>` with
``block_sparse`` off); tests check values and gradients against it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from audioar.layers.block_linear import (
    BlockViews,
    BoundInputGrad,
    BoundProduct,
    bind_input_grad,
    bind_product,
    block_weight_grads_t,
    constant,
    mlp_forward_t,
    mlp_input_grads_t,
)
from audioar.models.made import MADE

__all__ = ["FlowStack", "Evaluation", "BufferPool", "maf_stack"]

_SIMPLE_ORDERS = ("natural", "reverse")
_T = TypeVar("_T")


class BufferPool:
    """Flat tensors for a call's large buffers, handed out and given back.

    A buffer taken for a call is given back when nothing will read it again: at the end of
    an evaluation or a backward pass, or (the saved inputs of a training step) when the
    graph that saved it is freed. Each call takes its own, so threads sharing a model never
    write into each other's. A buffer carries what was made from it (views, bound
    products: :meth:`Buffer.derive`), kept while the same key asks for it. The weight
    gradients are not pooled: they become the parameters' ``.grad``, which callers keep.
    """

    _KEEP = 4  # free buffers kept, at most

    def __init__(self) -> None:
        self._free: list[Buffer] = []
        self._lock = threading.Lock()

    def take(self, kind: str, numel: int, like: Tensor) -> Buffer:
        """A free buffer of ``numel`` elements of ``like``'s dtype and device, or a new one."""
        key = (kind, numel, like.dtype, like.device)
        for i in range(len(self._free) - 1, -1, -1):
            try:
                buffer = self._free[i]
            except IndexError:  # another thread took one meanwhile
                continue
            if buffer.key == key:
                try:
                    self._free.remove(buffer)
                except ValueError:  # another thread took this one
                    continue
                return buffer
        return Buffer(key, like.new_empty(numel))

    def give(self, buffer: Buffer) -> None:
        """Give ``buffer`` back (it is then handed out again)."""
        self._free.append(buffer)
        if len(self._free) > self._KEEP:
            del self._free[0]

    def give_when_freed(self, owner: object, buffer: Buffer) -> None:
        """Give ``buffer`` back once ``owner`` (an autograd node's context) is gone."""
        weakref.finalize(owner, self.give, buffer)

    def __deepcopy__(self, memo: dict) -> BufferPool:
        return BufferPool()  # a copy's buffers are its own

    def __reduce__(self) -> tuple:
        return (BufferPool, ())


class Buffer:
    """One pooled flat tensor and what was made from it (see :class:`BufferPool`)."""

    __slots__ = ("key", "tensor", "_made")

    def __init__(self, key: tuple, tensor: Tensor) -> None:
        self.key = key
        self.tensor = tensor
        self._made: tuple[int, object, Any] | None = None

    def derive(self, n: int, of: object, make: Callable[[Tensor], _T]) -> _T:
        """``make(self.tensor)`` for ``n`` columns and the object ``of`` (the block views it
        binds), kept with the buffer while both are the same."""
        if self._made is None or self._made[0] != n or self._made[1] is not of:
            self._made = (n, of, make(self.tensor))  # holds `of`: its id stays its own
        return self._made[2]


@dataclass(frozen=True)
class Evaluation:
    """What evaluation without autograd folds into the flows, made from the parameters.

    ``columns`` holds, per flow, ``(c, shift)``: ``(features, 1)`` columns in its generation
    order such that the flow's affine transform followed by its batch norm (evaluation
    mode, ``y = u scale + shift``) is ``(xs - mean) exp(c - 2b s) + shift``, with ``s`` the
    sigmoid of ``2 raw / b`` and ``c = b + log(scale)``; ``None`` without batch norm.
    ``norms_log_det`` is the sum of the batch norms' log-dets. ``layers`` holds, per flow
    and MADE layer, ``(alpha, bias)``: the factor of the layer's product and the
    ``(units, 1)`` column added to it, with a tanh's ``2 sigmoid(2z) - 1`` folded in
    (the hidden layers then keep ``sigmoid(2z)``).
    """

    columns: Sequence[tuple[Tensor, Tensor]] | None
    norms_log_det: Tensor | float
    layers: Sequence[Sequence[tuple[float, Tensor]]]


@dataclass(frozen=True)
class FlowStack:
    """What one call of the node needs besides its tensor inputs (modules are read only)."""

    mades: Sequence[MADE]
    views: Sequence[Sequence[BlockViews]]  # each MADE's block views
    norms: Sequence[nn.Module]  # BatchNormBijector per flow, or empty
    bound: float
    activation: str
    batch_stats: bool  # batch norm in training mode
    dropout: float  # dropout probability in use on the MADEs' hidden units (0 in evaluation)
    # Every MADE has the same blocks and masks: the node's weight inputs are the stacks,
    # (flows, rows, cols) per layer and block, and their gradients batched products.
    shared: bool
    buffers: BufferPool
    evaluation: Evaluation | None = None  # set for evaluation without autograd


def _sort(made: MADE, h: Tensor) -> Tensor:
    """Rows (features) in the data's order -> ``made``'s generation order."""
    return made.to_generation_order(h, dim=0)


def _unsort(made: MADE, h: Tensor) -> Tensor:
    """Inverse of :func:`_sort`."""
    return made.from_generation_order(h, dim=0)


def _reorder(source: MADE, target: MADE, h: Tensor) -> Tensor:
    """Rows in ``source``'s generation order -> ``target``'s."""
    a, b = source.order_kind, target.order_kind
    if a in _SIMPLE_ORDERS and b in _SIMPLE_ORDERS:
        return h if a == b else h.flip(0)
    return _sort(target, _unsort(source, h))


@dataclass(frozen=True)
class _NormRows:
    """The batch norms of all flows for one call: ``(flows, features)`` tensors, each row in
    its flow's generation order (one gather for all flows instead of a reordering per flow).
    """

    mean: Tensor  # running means, or (batch statistics) filled flow by flow
    var: Tensor  # running variances, or (batch statistics) filled flow by flow
    log_gamma_sum: Tensor  # () over all flows
    eps: float
    inv_perm: Tensor | None  # (flows, features) gather index back to the data's order
    # Per flow, views made once per call: exp(log_gamma) and beta as (features, 1)
    # columns, and the (features,) rows of mean and var.
    gamma_cols: Sequence[Tensor] = ()
    beta_cols: Sequence[Tensor] = ()
    mean_rows: Sequence[Tensor] = ()
    var_rows: Sequence[Tensor] = ()


def _norm_rows(stack: FlowStack, like: Tensor) -> _NormRows:
    norms, mades = stack.norms, stack.mades
    general = any(made.order_kind != "natural" for made in mades)
    perm = torch.stack([made.perm for made in mades]) if general else None
    inv_perm = torch.stack([made.inv_perm for made in mades]) if general else None

    def rows(vectors: list[Tensor]) -> Tensor:
        stacked = torch.stack(vectors)
        return stacked.gather(1, perm) if perm is not None else stacked

    log_gamma = rows([norm.log_gamma.detach() for norm in norms])
    if stack.batch_stats:
        mean, var = like.new_empty(2, *log_gamma.shape).unbind(0)
    else:
        mean = rows([norm.running_mean for norm in norms])
        var = rows([norm.running_var for norm in norms])
    return _NormRows(
        mean=mean,
        var=var,
        log_gamma_sum=log_gamma.sum(),
        eps=norms[0].eps,
        inv_perm=inv_perm,
        gamma_cols=log_gamma.exp().unsqueeze(2).unbind(0),
        beta_cols=rows([norm.beta.detach() for norm in norms]).unsqueeze(2).unbind(0),
        mean_rows=mean.unbind(0),
        var_rows=var.unbind(0),
    )


def _data_rows(rows: Tensor, norm_rows: _NormRows) -> Tensor:
    """``(..., flows, features)`` rows in generation order -> the data's order."""
    index = norm_rows.inv_perm
    return rows.gather(-1, index.expand_as(rows)) if index is not None else rows


def _norms_log_det(stack: FlowStack, norm_rows: _NormRows) -> Tensor:
    """The log-det of every batch norm, ``sum(log_gamma - log(var + eps) / 2)``; in training
    mode also folds the batch statistics into the running ones."""
    norms = stack.norms
    log_det = norm_rows.log_gamma_sum - 0.5 * norm_rows.var.add(norm_rows.eps).log_().sum()
    if stack.batch_stats:
        running = [norm.running_mean for norm in norms] + [norm.running_var for norm in norms]
        stats = [*_data_rows(norm_rows.mean, norm_rows), *_data_rows(norm_rows.var, norm_rows)]
        momenta = {norm.momentum for norm in norms}
        if len(momenta) == 1:
            torch._foreach_lerp_(running, stats, momenta.pop())
        else:
            for buffer, stat, norm in zip(running, stats, [*norms, *norms], strict=True):
                buffer.lerp_(stat, norm.momentum)
    return log_det


@dataclass(frozen=True)
class _FlowBuffers:
    """One flow's views of the buffer of MADE layer inputs (made once per buffer)."""

    inputs: tuple[Tensor, ...]  # per MADE layer, (units, batch): its input
    data: Tensor  # the feature rows of inputs[0] (after the context's)
    context: Tensor | None  # the context rows of inputs[0]
    products: tuple[BoundProduct, ...] | None  # every layer's product bound (no dropout)


def _forward_buffers(stack: FlowStack, n: int, like: Tensor) -> tuple[Buffer, list[Tensor], list]:
    """A buffer for the MADE layer inputs of every flow (which the backward pass reads) and
    the MADE outputs: the buffer, the ``(flows, units, batch)`` inputs of each layer, and
    each flow's :class:`_FlowBuffers`."""
    views = stack.views
    sizes = [v.in_features for v in views[0]]
    rows = views[0][-1].out_features
    flows = len(views)
    buffer = stack.buffers.take("inputs", (flows * sum(sizes) + rows) * n, like)
    c = stack.mades[0].context_features
    bind = stack.dropout == 0

    def make(flat: Tensor) -> tuple[list[Tensor], list[_FlowBuffers]]:
        *parts, last = flat.split([flows * size * n for size in sizes] + [rows * n])
        layer_inputs = [part.view(flows, size, n) for part, size in zip(parts, sizes, strict=True)]
        output = last.view(rows, n)
        per_flow = []
        for t, flow_views in enumerate(views):
            inputs = tuple(buffer[t] for buffer in layer_inputs)
            products = None
            if bind:
                products = tuple(map(bind_product, inputs, flow_views, (*inputs[1:], output)))
            context = inputs[0][:c] if c else None
            per_flow.append(_FlowBuffers(inputs, inputs[0][c:], context, products))
        return layer_inputs, per_flow

    if not bind:  # the products are bound only without dropout
        return buffer, *make(buffer.tensor)
    layer_inputs, per_flow = buffer.derive(n, views, make)
    return buffer, layer_inputs, per_flow


def _backward_buffers(
    stack: FlowStack, n: int, like: Tensor
) -> tuple[Buffer, list[Tensor], list[tuple[tuple[Tensor, ...], tuple[BoundInputGrad, ...]]]]:
    """A buffer for the backward pass through every flow's MADE: the gradients of each
    layer's output (which the weight gradients read) and, per layer, one tensor for its
    input gradient that the flows fill in turn; per flow, views and bound products."""
    views = stack.views
    flows = len(views)
    outs = [v.out_features for v in views[0]]
    ins = [v.in_features for v in views[0]]
    buffer = stack.buffers.take("grads", (flows * sum(outs) + sum(ins)) * n, like)

    def make(flat: Tensor) -> tuple[list[Tensor], list]:
        parts = flat.split([flows * size * n for size in outs] + [size * n for size in ins])
        grads = [part.view(flows, size, n) for part, size in zip(parts, outs, strict=False)]
        input_grads = [
            part.view(size, n) for part, size in zip(parts[len(outs) :], ins, strict=True)
        ]
        per_flow = []
        for t, flow_views in enumerate(views):
            rows = tuple(g[t] for g in grads)
            per_flow.append((rows, tuple(map(bind_input_grad, rows, flow_views, input_grads))))
        return grads, per_flow

    grads, per_flow = buffer.derive(n, views, make)
    return buffer, grads, per_flow


def _flow_forward(
    stack: FlowStack,
    t: int,
    xs: Tensor,
    context: Tensor | None,
    log_det: Tensor,
    buffers: _FlowBuffers | None,
    norm_rows: _NormRows | None,
) -> tuple[Tensor, tuple]:
    """Flow ``t`` on ``xs`` ``(features, batch)``: its output ``y`` and saved tensors.

    Adds the affine part of the log-det to ``log_det`` ``(batch,)`` in place (the batch
    norms' part is :func:`_norms_log_det`, for all flows at once). ``buffers`` (for
    autograd) hold each MADE layer's input; ``None`` (no autograd) saves nothing.
    ``norm_rows`` is ``None`` without batch norm. (Evaluation takes :func:`_evaluate`.)
    """
    made = stack.mades[t]
    n = xs.shape[1]
    views = stack.views[t]
    values: list[Tensor] = []
    keeps = None
    if stack.dropout > 0:  # drawn (batch, units) like F.dropout: the same draws as the reference
        p = stack.dropout
        keeps = [
            xs.new_empty(n, v.out_features).bernoulli_(1 - p).div_(1 - p).t() for v in views[:-1]
        ]
    if buffers is not None:
        if buffers.context is not None and context is not None:
            buffers.context.copy_(context)
        xs = buffers.data.copy_(xs)
        inputs = buffers.inputs
        values = mlp_forward_t(
            inputs[0], views, stack.activation, inputs[1:], keeps, buffers.products
        )
        out = values.pop()
    else:
        inp = torch.cat([context, xs]) if context is not None else xs
        out = mlp_forward_t(inp, views, stack.activation, None, keeps)[-1]
    out = out.view(made.features, 2, n)
    bound = stack.bound
    mean_out, raw_scale = out.unbind(1)
    sig = torch.sigmoid(raw_scale * constant(2.0 / bound, xs))
    log_scale = torch.mul(sig, constant(2.0 * bound, xs)).sub_(constant(bound, xs))
    log_det.sub_(log_scale.sum(0))
    inv_scale = log_scale.neg_().exp_()
    us = torch.sub(xs, mean_out).mul_(inv_scale)
    if not stack.norms:
        return us, (values, keeps, sig, inv_scale, us)
    assert norm_rows is not None
    mean, var = norm_rows.mean_rows[t], norm_rows.var_rows[t]
    if stack.batch_stats:
        per_row = constant(1.0 / n, us)  # sum, then times 1 / n: a mean without a wrapped n
        torch.sum(us, 1, out=mean).mul_(per_row)
        centred = us - mean.unsqueeze(1)
        torch.sum(centred.square(), 1, out=var).mul_(per_row)
    else:
        centred = us - mean.unsqueeze(1)
    inv_std = var.add(constant(norm_rows.eps, var)).rsqrt_().unsqueeze(1)
    scale = inv_std * norm_rows.gamma_cols[t]
    y = torch.addcmul(norm_rows.beta_cols[t], centred, scale)
    return y, (values, keeps, sig, inv_scale, us, centred, inv_std, scale)


def _stack_forward(
    x: Tensor, context: Tensor | None, stack: FlowStack, save: bool
) -> tuple[Tensor, Tensor, list[tuple], Buffer | None, list[Tensor], _NormRows | None]:
    """``z`` ``(batch, features)``, ``log_det`` ``(batch,)``, each flow's saved tensors, the
    buffer of the MADE layer inputs and its ``(flows, units, batch)`` views (when ``save``),
    and the norms' rows."""
    mades = stack.mades
    n = x.shape[0]
    log_det = x.new_zeros(n)
    context_t = context.t().contiguous() if context is not None else None
    h = _sort(mades[0], x.t()).contiguous()
    norm_rows = _norm_rows(stack, x) if stack.norms else None
    buffer, layer_inputs, per_flow = _forward_buffers(stack, n, x) if save else (None, [], None)
    saved: list[tuple] = []
    for t, made in enumerate(mades):
        flow_buffers = per_flow[t] if per_flow is not None else None
        y, flow_saved = _flow_forward(stack, t, h, context_t, log_det, flow_buffers, norm_rows)
        saved.append(flow_saved)
        h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
    if norm_rows is not None:
        log_det.add_(_norms_log_det(stack, norm_rows))
    return h.t().contiguous(), log_det, saved, buffer, layer_inputs, norm_rows


def _evaluate(x: Tensor, context: Tensor | None, stack: FlowStack) -> tuple[Tensor, Tensor]:
    """The forward pass without autograd, batch norm (if any) in evaluation mode.

    Per flow, the MADE runs on the folded layers of :class:`Evaluation` into one buffer all
    flows use in turn; its output and the flow's input give the flow's output: with
    ``s = sigmoid(2 raw / b)``, ``log_scale = 2b s - b`` and the log-det gains ``-2b sum(s)``
    (the rest, ``b`` per feature and the batch norms', is constant).
    """
    ev = stack.evaluation
    assert ev is not None
    mades = stack.mades
    n = x.shape[0]
    bound = stack.bound
    views = stack.views[0]
    c = mades[0].context_features
    sizes = [v.in_features for v in views]
    rows = views[-1].out_features
    buffer = stack.buffers.take("eval", (sum(sizes) + rows) * n, x)
    try:
        *parts, last = buffer.tensor.split([size * n for size in sizes] + [rows * n])
        inputs = [part.view(size, n) for part, size in zip(parts, sizes, strict=True)]
        out = last.view(rows, n)
        if c:  # the first layer's input: the context rows, then the data's
            inputs[0][:c].copy_(context.t())
        log_det = x.new_zeros(n)
        h = _sort(mades[0], x.t()).contiguous()
        minus_2b, factor = constant(-2.0 * bound, x), constant(2.0 / bound, x)
        for t, made in enumerate(mades):
            if c:
                inputs[0][c:].copy_(h)
                layer_in = inputs[0]
            else:
                layer_in = h  # a tensor of its own: no copy
            _folded_mlp(layer_in, stack.views[t], ev.layers[t], inputs[1:], out, stack.activation)
            mean_out, raw_scale = out.view(made.features, 2, n).unbind(1)
            sig = torch.mul(raw_scale, factor).sigmoid_()
            log_det.add_(sig.sum(0), alpha=-2.0 * bound)
            if ev.columns is None:
                scale = torch.mul(sig, minus_2b).add_(constant(bound, x)).exp_()
                y = torch.sub(h, mean_out).mul_(scale)
            else:
                col, shift = ev.columns[t]
                scale = torch.addcmul(col, sig, minus_2b).exp_()
                y = torch.addcmul(shift, torch.sub(h, mean_out), scale)
            h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
    finally:
        stack.buffers.give(buffer)
    log_det.add_(ev.norms_log_det + bound * mades[0].features * len(mades))
    return h.t().contiguous(), log_det


def _folded_mlp(
    h: Tensor,
    views: Sequence[BlockViews],
    layers: Sequence[tuple[float, Tensor]],
    outs: Sequence[Tensor],
    out: Tensor,
    activation: str,
) -> None:
    """One MADE without autograd on the layers of :class:`Evaluation`, into ``out``."""
    last = len(views) - 1
    for i, (layer, (alpha, bias)) in enumerate(zip(views, layers, strict=True)):
        target = out if i == last else outs[i]
        for (r0, r1, _, c1), w in zip(layer.blocks, layer.weight, strict=True):
            rows = target[r0:r1]
            if c1 == 0:
                rows.zero_()
            else:  # beta=0: the (uninitialised) rows are not read
                torch.addmm(rows, w, h[:c1], beta=0.0, alpha=alpha, out=rows)
        target.add_(bias)
        if i < last:
            if activation == "tanh":
                target.sigmoid_()  # sigmoid(2z); the next layer folds in 2 s - 1
            elif activation == "relu":
                target.relu_()
        h = target


def evaluation_layers(
    views: Sequence[Sequence[BlockViews]], activation: str
) -> list[list[tuple[float, Tensor]]]:
    """The ``layers`` of :class:`Evaluation`: per flow and MADE layer ``(alpha, bias)``.

    For tanh, a hidden layer keeps ``s = sigmoid(2z)`` (``tanh(z) = 2s - 1``), so the layer
    after it computes ``W (2s - 1) + b = 2 W s + (b - W 1)``; a hidden layer's own
    pre-activation is doubled for its sigmoid: ``alpha`` and ``bias`` carry both factors.
    """
    tanh = activation == "tanh"
    layers = []
    for flow_views in views:
        last = len(flow_views) - 1
        flow = []
        for i, layer in enumerate(flow_views):
            assert layer.bias is not None
            bias = layer.bias
            alpha = 1.0
            if tanh and i > 0:  # input 2s - 1
                sums = torch.cat([w.sum(1) for w in layer.weight])  # zero where masked
                bias = bias - sums.unsqueeze(1)
                alpha = 2.0
            if tanh and i < last:  # sigmoid(2z)
                bias, alpha = 2.0 * bias, 2.0 * alpha
            flow.append((alpha, bias.contiguous()))
        layers.append(flow)
    return layers


def evaluation_columns(
    mades: Sequence[MADE], norms: Sequence[nn.Module], bound: float
) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """The ``columns`` and ``norms_log_det`` of :class:`Evaluation` (no autograd)."""
    columns = []
    log_dets = []
    for made, norm in zip(mades, norms, strict=True):
        log_scale = norm.log_gamma - 0.5 * torch.log(norm.running_var + norm.eps)
        scale = torch.exp(log_scale)
        shift = norm.beta - norm.running_mean * scale
        c = _sort(made, log_scale).add(bound).unsqueeze(1)
        columns.append((c, _sort(made, shift).unsqueeze(1)))
        log_dets.append(log_scale.sum())
    return columns, torch.stack(log_dets).sum()


def _flow_backward(
    stack: FlowStack,
    t: int,
    grad_y: Tensor,
    grad_log_det: tuple[Tensor, Tensor],
    saved: tuple,
    input_grad: bool,
    grads: Sequence[Tensor],
    norm_grads: tuple[Tensor, Tensor] | None,
    bound: Sequence[BoundInputGrad] | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Backward of flow ``t`` up to its MADE's layer outputs (weight gradients come later).

    Args:
        grad_y: ``(features, batch)`` gradient of the flow's output, its generation order.
        grad_log_det: The gradient of the total log-det ``g`` ``(batch,)`` as ``(g.sum(),
            -4 g)`` (``(1, batch)``), the forms the batch norm and the log-scale take.
        saved: The tensors :func:`_flow_forward` saved.
        input_grad: Whether the MADE's input gradient is needed (false only for the first
            flow when neither the data nor the context needs a gradient).
        grads: Per MADE layer, ``(units, batch)``, filled with the gradient of its output.
        norm_grads: ``(features,)`` rows to write the gradients of the batch norm's
            ``log_gamma`` and ``beta`` into (generation order), or ``None`` without.
        bound: The MADE layers' input gradients bound to ``grads`` (:func:`_backward_buffers`).

    Returns:
        ``grad_xs`` ``(features, batch)`` (``None`` without ``input_grad``) and
        ``grad_context`` ``(context, batch)`` or ``None``.
    """
    made = stack.mades[t]
    n = grad_y.shape[1]
    total, minus_4g = grad_log_det
    values, keeps, sig, inv_scale, us = saved[:5]
    if norm_grads is not None:
        centred, inv_std, scale = saved[5:]
        grad_log_gamma, grad_beta = norm_grads
        torch.sum(grad_y, 1, out=grad_beta)
        # log_gamma: through y, plus the log-det's 1 per row (summed over the batch).
        torch.addcmul(total, (grad_y * centred).sum(1), scale.squeeze(1), out=grad_log_gamma)
        if stack.batch_stats:
            # Through the batch mean and variance as batch norm's backward goes, plus the
            # log-det's -log(var + eps) / 2: var's gradient is -grad_log_gamma / 2 var.
            grad_u = torch.sub(grad_y, grad_beta.unsqueeze(1), alpha=1.0 / n).mul_(scale)
            coeff = torch.mul(inv_std, inv_std).mul_(grad_log_gamma.unsqueeze(1))
            grad_u.addcmul_(centred, coeff, value=-1.0 / n)
        else:
            grad_u = grad_y * scale
    else:
        grad_u = grad_y
    grad_out = grads[-1].view(made.features, 2, n)
    grad_out_mean, grad_out_scale = grad_out.unbind(1)
    grad_mean = torch.mul(grad_u, inv_scale, out=grad_out_mean).neg_()
    # log_scale = 2b sigmoid(2 raw / b) - b: us = (xs - mean) exp(-log_scale) and the
    # log-det's -1 per row give -(g + grad_u us), times d log_scale / d raw = 4 sig (1 - sig).
    grad_log_scale = torch.addcmul(minus_4g, grad_u, us, value=-4.0)
    torch.ops.aten.sigmoid_backward.grad_input(grad_log_scale, sig, grad_input=grad_out_scale)
    views = stack.views[t]
    grad_in = mlp_input_grads_t(grads, values, views, stack.activation, input_grad, keeps, bound)
    if grad_in is None:
        return None, None
    c = made.context_features  # grad_in is refilled by the next flow: new tensors out
    return torch.sub(grad_in[c:], grad_mean), grad_in[:c].clone() if c else None


def _weight_grads(stack: FlowStack, grads: list[Tensor], inputs: list[Tensor]) -> list[Tensor]:
    """The MADE weight gradients, in the order of the node's weight inputs.

    ``grads`` and ``inputs`` are the ``(flows, units, batch)`` layer output gradients and
    inputs. All are views of one new tensor: autograd makes them the parameters' ``.grad``,
    which callers may keep.
    Shared masks: one ``(flows, rows, col_end)`` gradient per layer and block, one batched
    product each; otherwise per flow, layer and block ``(rows, col_end)``.
    """
    flows = len(stack.mades)
    layers = stack.views
    if stack.shared:
        shapes = [[(flows, r1 - r0, c1) for r0, r1, _, c1 in layer.blocks] for layer in layers[0]]
        sizes = [a * b * c for layer in shapes for a, b, c in layer]
        chunks = iter(grads[0].new_empty(sum(sizes)).split(sizes))
        result = []
        for i, layer_shapes in enumerate(shapes):
            outs = [next(chunks).view(shape) for shape in layer_shapes]
            result += block_weight_grads_t(grads[i], inputs[i], layers[0][i], outs)
        return result
    shapes_t = [
        [[(r1 - r0, c1) for r0, r1, _, c1 in layer.blocks] for layer in flow_layers]
        for flow_layers in layers
    ]
    sizes = [r * c for flow in shapes_t for layer in flow for r, c in layer]
    chunks = iter(grads[0].new_empty(sum(sizes)).split(sizes))
    result = []
    for t, flow_shapes in enumerate(shapes_t):
        for i, layer_shapes in enumerate(flow_shapes):
            outs = [next(chunks).view(shape) for shape in layer_shapes]
            result += block_weight_grads_t(grads[i][t], inputs[i][t], layers[t][i], outs)
    return result


class _MAFStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, context, stack, counts, *params):  # noqa: ANN001, ANN205
        z, log_det, saved, buffer, layer_inputs, norm_rows = _stack_forward(
            x, context, stack, save=True
        )
        if buffer is not None:  # back to the pool once this graph is freed
            stack.buffers.give_when_freed(ctx, buffer)
        ctx.save_for_backward(*params)  # only for autograd's in-place modification check
        ctx.stack = stack
        ctx.counts = counts
        ctx.flows = saved
        ctx.layer_inputs = layer_inputs
        ctx.norm_rows = norm_rows
        return z, log_det

    @staticmethod
    def backward(ctx, grad_z, grad_log_det):  # noqa: ANN001, ANN205
        stack = ctx.stack
        mades = stack.mades
        flows = len(mades)
        saved = ctx.flows
        _ = ctx.saved_tensors  # raises if a parameter was changed in place since forward
        grad_y = _sort(mades[-1], grad_z.t()).contiguous()
        input_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_context = None
        buffer, grads, per_flow = _backward_buffers(stack, grad_z.shape[0], grad_z)
        try:
            # log_gamma and beta gradients of every flow, rows in generation order.
            norm_grads = grad_z.new_empty(2, flows, mades[0].features) if stack.norms else None
            log_det_forms = (grad_log_det.sum(), grad_log_det.mul(-4.0).unsqueeze(0))
            norm_rows = (
                list(zip(norm_grads[0].unbind(0), norm_grads[1].unbind(0), strict=True))
                if norm_grads is not None
                else None
            )
            grad_xs = None
            for t in reversed(range(flows)):
                grad_xs, grad_c = _flow_backward(
                    stack,
                    t,
                    grad_y,
                    log_det_forms,
                    saved[t],
                    t > 0 or input_grad,
                    per_flow[t][0],
                    norm_rows[t] if norm_rows is not None else None,
                    per_flow[t][1],
                )
                if grad_c is not None and ctx.needs_input_grad[1]:
                    grad_context = grad_c if grad_context is None else grad_context + grad_c
                if t > 0:
                    grad_y = _reorder(mades[t], mades[t - 1], grad_xs)
            grad_x = _unsort(mades[0], grad_xs).t() if ctx.needs_input_grad[0] else None
            weights = _weight_grads(stack, grads, ctx.layer_inputs)
            # Bias gradients: (flows, units) per layer, handed out flow by flow.
            bias_rows = [g.sum(2) for g in grads]
            biases = [rows[t] for t in range(flows) for rows in bias_rows]
        finally:
            stack.buffers.give(buffer)
        norm_params: list[Tensor] = []
        if norm_grads is not None:
            log_gamma, beta = _data_rows(norm_grads, ctx.norm_rows).unbind(0)
            norm_params = [g for t in range(flows) for g in (log_gamma[t], beta[t])]
        grad_context = grad_context.t() if grad_context is not None else None
        n_weights, n_biases, _ = ctx.counts
        assert len(weights) == n_weights and len(biases) == n_biases
        return grad_x, grad_context, None, None, *weights, *biases, *norm_params


def maf_stack(
    x: Tensor,
    context: Tensor | None,
    stack: FlowStack,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    norm_params: Sequence[Tensor],
) -> tuple[Tensor, Tensor]:
    """Every flow of a MAF (affine MADE transforms, batch norm, reordering) as one node.

    Args:
        x: ``(batch, features)`` data, in the weights' dtype.
        context: ``(batch, context_features)`` (already checked and cast) or ``None``.
        stack: The flows and what the call needs of them: all MADEs with the same
            activation (one of :data:`~audioar.layers.block_linear.FUSED_ACTIVATIONS`) and
            dropout, MADEs and batch norms all in the same mode; ``stack.evaluation`` set
            when no gradient is needed and batch norm is in evaluation mode.
        weights: The MADE weights: with ``stack.shared`` the stacks, ``(flows, rows,
            col_end)`` per layer and block; otherwise every flow's stored blocks, per flow,
            layer and block. The products read ``stack.views`` of them.
        biases: Every flow's MADE biases, per flow and layer.
        norm_params: Every flow's batch-norm ``log_gamma`` and ``beta``, or empty.

    Returns:
        ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|, as
        :meth:`MAF.forward <audioar.models.MAF.forward>` defines them; in training mode the
        running statistics of the batch norms are updated.
    """
    params = [*weights, *biases, *norm_params]
    tensors = [x, context, *params]
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if not grad:
        with torch.no_grad():
            if stack.evaluation is not None:
                return _evaluate(x, context, stack)
            z, log_det, _, _, _, _ = _stack_forward(x, context, stack, save=False)
        return z, log_det
    counts = (len(weights), len(biases), len(norm_params))
    return _MAFStack.apply(x, context, stack, counts, *params)
