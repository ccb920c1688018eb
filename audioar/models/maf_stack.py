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
* what batch norm needs of every flow is prepared once per call, as ``(flows, features)``
  rows reordered by one gather: the scales and shifts, the statistics (and, in training,
  one update of all running statistics), the log-det, the parameter gradients;
* the log-determinant gradient is the same for every flow and enters each one directly;
  so does the sum the batch norms' log-dets need;
* the weight gradients wait until the backward pass has reached the first flow: when all
  MADEs share their masks (equal hidden degrees, the default) each weight block of all
  flows is then one batched product, which keeps both cores of a small CPU on whole
  products; all weight and bias gradients are views of one tensor, one allocation per
  step instead of one per layer (large blocks freed together at every step can make the C
  allocator return their pages to the system and fault them back in; measured per step:
  0-1,300 page faults this way, 0-5,900 with one tensor per layer, depending on the
  process's history).

Without autograd (evaluation, scoring) nothing is kept: the MADEs run on the same block
views as training, and each batch norm, an affine map then
(:meth:`BatchNormBijector.frozen`), is folded into its flow's affine transform, with
columns kept between calls (:func:`_frozen_columns`).

With stacked parameters (:class:`~audioar.models.maf._FlowStacks`, all MADEs sharing their
masks) the node's inputs are the stacks, ``(flows, ...)`` each, and the batched weight
gradients are returned as they are computed.

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

import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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

__all__ = ["maf_stack"]

_SIMPLE_ORDERS = ("natural", "reverse")
_T = TypeVar("_T")


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
    cache: dict | None = None  # kept by the MAF between calls (_frozen_columns, _kept)
    # The MAF's parameters stacked over flows (``(flows, ...)``, in _flow_params order), the
    # node's inputs then, or None for per-flow parameters.
    stacked: Sequence[Tensor] | None = None


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


def _norm_rows(stack: _Stack, like: Tensor) -> _NormRows:
    norms, mades = stack.norms, stack.mades
    general = any(made._order_kind != "natural" for made in mades)
    perm = torch.stack([made.perm for made in mades]) if general else None
    inv_perm = torch.stack([made.inv_perm for made in mades]) if general else None

    def rows(vectors: list[Tensor] | Tensor) -> Tensor:
        stacked = vectors if isinstance(vectors, Tensor) else torch.stack(vectors)
        return stacked.gather(1, perm) if perm is not None else stacked

    if stack.stacked is not None:  # (flows, features) already
        log_gamma_src, beta_src = stack.stacked[-2].detach(), stack.stacked[-1].detach()
    else:
        log_gamma_src = [norm.log_gamma.detach() for norm in norms]
        beta_src = [norm.beta.detach() for norm in norms]
    log_gamma = rows(log_gamma_src)
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
        beta_cols=rows(beta_src).unsqueeze(2).unbind(0),
        mean_rows=mean.unbind(0),
        var_rows=var.unbind(0),
    )


def _data_rows(rows: Tensor, norm_rows: _NormRows) -> Tensor:
    """``(..., flows, features)`` rows in generation order -> the data's order."""
    index = norm_rows.inv_perm
    return rows.gather(-1, index.expand_as(rows)) if index is not None else rows


def _norms_log_det(stack: _Stack, norm_rows: _NormRows) -> Tensor:
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


def _flow_forward(
    stack: _Stack,
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
    ``norm_rows`` is ``None`` without batch norm. (Evaluation without autograd takes
    :func:`_flow_evaluate`.)
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
        out = _made_output(stack, t, xs, context, keeps)
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
    assert norm_rows is not None  # batch norm in evaluation without autograd: _flow_evaluate
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


def _made_output(
    stack: _Stack, t: int, xs: Tensor, context: Tensor | None, keeps: list[Tensor] | None = None
) -> Tensor:
    """Flow ``t``'s MADE output ``(2 features, batch)`` without autograd (nothing kept)."""
    inp = torch.cat([context, xs]) if context is not None else xs
    return mlp_forward_t(inp, stack.views[t], stack.activation, None, keeps)[-1]


def _frozen_columns(stack: _Stack) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Evaluation without autograd: each flow's batch norm folded into its affine transform.

    ``y = (xs - mean) exp(-log_scale) scale + shift`` with ``log_scale = 2b s - b`` (``s`` the
    sigmoid of the MADE's raw scale) is ``(xs - mean) exp(c - 2b s) + shift`` with ``c = b +
    log(scale)``: per flow the ``(features, 1)`` columns ``c`` and ``shift`` in its
    generation order, and the sum of the batch norms' log-dets. Kept while every batch
    norm's cached map (:meth:`frozen`) is the same object, i.e. until a parameter or
    running statistic changes.
    """
    bound = stack.bound
    maps = [norm.frozen() for norm in stack.norms]
    cache = stack.cache
    found = cache.get(("columns",)) if cache is not None else None
    if found is not None and found[0] == bound and all(map(operator.is_, found[1], maps)):
        return found[2], found[3]  # the same maps: same storage, values, dtype and device
    columns = []
    with torch.no_grad():
        for made, (scale, shift, _) in zip(stack.mades, maps, strict=True):
            c = _sort(made, scale).log().add_(bound).unsqueeze(1)
            columns.append((c, _sort(made, shift).unsqueeze(1)))
        norms_log_det = sum(m[2] for m in maps)
    if cache is not None:
        cache[("columns",)] = (bound, maps, columns, norms_log_det)
    return columns, norms_log_det


def _flow_evaluate(
    stack: _Stack,
    t: int,
    xs: Tensor,
    out: Tensor,
    log_det: Tensor,
    columns: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Flow ``t`` without autograd, batch norm (if any) in evaluation mode: its output
    from its input ``xs`` and its MADE's output ``out`` ``(2 features, batch)``.

    Adds ``-2b sum(s)`` to ``log_det`` (the rest of the log-det, ``b`` per feature and the
    batch norms', is constant); ``columns`` are the flow's ``(c, shift)``, or ``None``
    without batch norm (then ``c = b`` and no shift).
    """
    made = stack.mades[t]
    n = xs.shape[1]
    bound = stack.bound
    mean_out, raw_scale = out.view(made.features, 2, n).unbind(1)
    sig = torch.mul(raw_scale, constant(2.0 / bound, xs)).sigmoid_()
    log_det.add_(sig.sum(0), alpha=-2.0 * bound)
    minus_2b = constant(-2.0 * bound, xs)
    if columns is None:
        factor = torch.mul(sig, minus_2b).add_(constant(bound, xs)).exp_()
        return torch.sub(xs, mean_out).mul_(factor)
    c, shift = columns
    factor = torch.addcmul(c, sig, minus_2b).exp_()
    return torch.addcmul(shift, torch.sub(xs, mean_out), factor)


_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)
_KEPT_KEYS = 16  # distinct (kind, size, dtype, device, thread) entries a cache keeps at most


@dataclass(eq=False)
class _Kept:
    """A buffer kept between calls (:func:`_kept`), with what was derived from it."""

    tensor: Tensor
    # References to its storage while nothing outside holds it: the tensor, the probe that
    # counts them, and the views in ``derived``.
    refs: int = 2
    derived: tuple | None = None  # (key, value) of _derive


def _kept(stack: _Stack, kind: str, numel: int, like: Tensor) -> _Kept:
    """A flat ``(numel,)`` tensor for the node's large per-call buffers, kept between calls.

    A kept tensor is handed out again only while nothing else holds its storage: not the
    graph of an earlier call (saved layer inputs), not gradients handed to the parameters
    and still there (accumulation, ``zero_grad(set_to_none=False)``), not a reference the
    caller kept. Two are kept per kind and size; otherwise (or without a cache) it is a new
    tensor, as before. Reuse spares the allocator the 12-30 MB a training step of the
    default MAF needs afresh, and the page faults when that memory went back to the system
    in between (after evaluation: some 6,000 faults, 10 ms, on the next step). Buffers are
    kept per thread: a buffer in use by a call is held by nothing the count would see, so
    two threads evaluating one model at once must not share them.
    """
    cache = stack.cache
    if cache is None or _USE_COUNT is None:
        return _Kept(like.new_empty(numel))
    key = ("kept", kind, numel, like.dtype, like.device, threading.get_ident())
    kept = cache.get(key)
    if kept is None:
        if sum(1 for k in cache if k[0] == "kept") >= _KEPT_KEYS:
            for k in [k for k in cache if k[0] == "kept"]:
                del cache[k]
        kept = cache[key] = []
    for record in kept:
        if _USE_COUNT(record.tensor.untyped_storage()._cdata) == record.refs:
            return record
    record = _Kept(like.new_empty(numel))
    if len(kept) < 2:
        kept.append(record)
    return record


def _derive(record: _Kept, key: tuple, make: Callable[[Tensor], _T]) -> _T:
    """``make(record.tensor)``, kept with the record while ``key`` is the same.

    What ``make`` returns holds views of the tensor (bound products, per-flow rows); their
    references to its storage count as the record's own from then on, so that
    :func:`_kept` still hands it out only when nothing else holds it. Views handed out
    beyond the call (to a graph, to the caller) must be new ones, not these.
    """
    if record.derived is not None and record.derived[0] == key:
        return record.derived[1]
    record.derived = None
    value = make(record.tensor)
    record.derived = (key, value)
    if _USE_COUNT is not None:
        record.refs = _USE_COUNT(record.tensor.untyped_storage()._cdata)
    return value


@dataclass(frozen=True)
class _FlowBuffers:
    """One flow's views of a kept buffer of MADE layer inputs (made once, :func:`_derive`)."""

    inputs: tuple[Tensor, ...]  # per MADE layer, (units, batch): its input
    data: Tensor  # the feature rows of inputs[0] (after the context's)
    context: Tensor | None  # the context rows of inputs[0]
    products: tuple[BoundProduct, ...] | None  # every layer's product bound (no dropout)


@dataclass(frozen=True)
class _ForwardBuffers:
    """The MADE layer inputs of every flow (training) or of one flow at a time (evaluation),
    a tensor for the MADE outputs, and each flow's views and bound products."""

    layer_inputs: list[Tensor]  # per MADE layer, (flows or 1, units, batch)
    flows: list[_FlowBuffers]
    views: Sequence[Sequence[BlockViews]]  # the weights bound (kept alive for the key)


def _views_key(stack: _Stack, n: int) -> tuple:
    return (n, stack.dropout == 0, *map(id, stack.views))


def _forward_buffers(stack: _Stack, n: int, like: Tensor, training: bool) -> _ForwardBuffers:
    """Kept buffers for the MADEs of every flow: with autograd (``training``) each flow's
    layer inputs, which the backward pass reads; without, one set all flows write in turn."""
    views = stack.views
    sizes = [v.in_features for v in views[0]]
    rows = views[0][-1].out_features
    count = len(views) if training else 1
    numel = (count * sum(sizes) + rows) * n
    record = _kept(stack, "inputs" if training else "eval", numel, like)
    c = stack.mades[0].context_features

    def make(flat: Tensor) -> _ForwardBuffers:
        *parts, last = flat.split([count * size * n for size in sizes] + [rows * n])
        layer_inputs = [part.view(count, size, n) for part, size in zip(parts, sizes, strict=True)]
        output = last.view(rows, n)
        flows = []
        for t, flow_views in enumerate(views):
            inputs = tuple(buffer[t if training else 0] for buffer in layer_inputs)
            products = None
            if stack.dropout == 0:
                outs = (*inputs[1:], output)
                products = tuple(map(bind_product, inputs, flow_views, outs))
            context = inputs[0][:c] if c else None
            flows.append(_FlowBuffers(inputs, inputs[0][c:], context, products))
        return _ForwardBuffers(layer_inputs, flows, views)

    return _derive(record, _views_key(stack, n), make)


@dataclass(frozen=True)
class _BackwardBuffers:
    """Kept buffers for the backward pass through every flow's MADE: the gradients of each
    layer's output (which the weight gradients read) and, per layer, one tensor for its
    input gradient that the flows fill in turn; per flow, views and bound products."""

    grads: list[Tensor]  # per MADE layer, (flows, out_units, batch)
    flows: list[tuple[tuple[Tensor, ...], tuple[BoundInputGrad, ...]]]
    views: Sequence[Sequence[BlockViews]]


def _backward_buffers(stack: _Stack, n: int, like: Tensor) -> _BackwardBuffers:
    views = stack.views
    flows = len(views)
    outs = [v.out_features for v in views[0]]
    ins = [v.in_features for v in views[0]]
    record = _kept(stack, "grads", (flows * sum(outs) + sum(ins)) * n, like)

    def make(flat: Tensor) -> _BackwardBuffers:
        parts = flat.split([flows * size * n for size in outs] + [size * n for size in ins])
        grads = [part.view(flows, size, n) for part, size in zip(parts, outs, strict=False)]
        input_grads = [
            part.view(size, n) for part, size in zip(parts[len(outs) :], ins, strict=True)
        ]
        per_flow = []
        for t, flow_views in enumerate(views):
            rows = tuple(g[t] for g in grads)
            per_flow.append((rows, tuple(map(bind_input_grad, rows, flow_views, input_grads))))
        return _BackwardBuffers(grads, per_flow, views)

    return _derive(record, _views_key(stack, n), make)


def _stack_forward(
    x: Tensor, context: Tensor | None, stack: _Stack, save: bool
) -> tuple[Tensor, Tensor, list[tuple], list[Tensor], _NormRows | None]:
    """``z`` ``(batch, features)``, ``log_det`` ``(batch,)``, each flow's saved tensors, the
    ``(flows, units, batch)`` inputs of every MADE layer (when ``save``) and the norms' rows."""
    mades = stack.mades
    n = x.shape[0]
    log_det = x.new_zeros(n)
    context_t = context.t().contiguous() if context is not None else None
    h = _sort(mades[0], x.t()).contiguous()
    frozen = not save and not stack.batch_stats  # batch norm as cached affine maps
    norm_rows = _norm_rows(stack, x) if stack.norms and not frozen else None
    saved: list[tuple] = []
    if frozen:  # evaluation without autograd: batch norm folded into the affine maps
        columns, norms_log_det = _frozen_columns(stack) if stack.norms else (None, 0.0)
        flows = _forward_buffers(stack, n, x, training=False).flows  # one set, in turn
        if context_t is not None and flows[0].context is not None:
            flows[0].context.copy_(context_t)
        for t, (made, flow) in enumerate(zip(mades, flows, strict=True)):
            flow.data.copy_(h)
            inputs = flow.inputs
            out = mlp_forward_t(
                inputs[0], stack.views[t], stack.activation, inputs[1:], None, flow.products
            )[-1]
            flow_columns = columns[t] if columns is not None else None
            y = _flow_evaluate(stack, t, h, out, log_det, flow_columns)
            h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
        log_det.add_(norms_log_det + stack.bound * mades[0].features * len(mades))
        return h.t().contiguous(), log_det, saved, [], None
    buffers = _forward_buffers(stack, n, x, training=True) if save else None
    for t, made in enumerate(mades):
        flow_buffers = buffers.flows[t] if buffers is not None else None
        y, flow_saved = _flow_forward(stack, t, h, context_t, log_det, flow_buffers, norm_rows)
        saved.append(flow_saved)
        h = _reorder(made, mades[t + 1], y) if t + 1 < len(mades) else _unsort(made, y)
    if norm_rows is not None:
        log_det.add_(_norms_log_det(stack, norm_rows))
    elif stack.norms:
        log_det.add_(sum(norm.frozen()[2] for norm in stack.norms))
    # New views for the graph: while it holds them, the kept buffer is not handed out again.
    layer_inputs = [b.view_as(b) for b in buffers.layer_inputs] if buffers is not None else []
    return h.t().contiguous(), log_det, saved, layer_inputs, norm_rows


def _flow_backward(
    stack: _Stack,
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


def _weight_grads(
    stack: _Stack, grads: list[Tensor], inputs: list[Tensor]
) -> list[list[Tensor]] | list[Tensor]:
    """Every flow's MADE parameter gradients, in :func:`_flow_params` order.

    Per flow ``[blocks of w_1..., b_1, ..., blocks of w_L..., b_L]``, all views of one
    tensor (see the module notes); ``grads`` and ``inputs`` are the ``(flows, units, batch)``
    layer output gradients and inputs. With shared masks each stored block of all flows is
    one contiguous ``(flows, rows, col_end)`` tensor, filled by one batched product; with
    stacked parameters these are returned as they are, ``[blocks of w_1..., b_1, ...]``
    with a leading flows dimension.
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
    flat = list(_kept(stack, "weight grads", sum(sizes), grads[0]).tensor.split(sizes))
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
        if stack.stacked is not None:
            return [g for blocks, b in zip(per_layer, biases, strict=True) for g in (*blocks, b)]
        unbound = [[w.unbind(0) for w in blocks] for blocks in per_layer]
        weights = [[[w[t] for w in blocks] for blocks in unbound] for t in range(flows)]
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
        [g for blocks, b in zip(weights[t], bias_rows, strict=True) for g in (*blocks, b)]
        for t, bias_rows in enumerate(zip(*[b.unbind(0) for b in biases], strict=True))
    ]


def _flow_params(made: MADE, norm: nn.Module | None) -> list[Tensor]:
    params = [p for layer in made.layers for p in (*layer.stored_weights(), layer.bias)]
    return params + ([norm.log_gamma, norm.beta] if norm is not None else [])


class _MAFStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, context, stack, *params):  # noqa: ANN001, ANN205
        z, log_det, saved, layer_inputs, norm_rows = _stack_forward(x, context, stack, save=True)
        ctx.save_for_backward(*params)  # only for autograd's in-place modification check
        ctx.stack = stack
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
        buffers = _backward_buffers(stack, grad_z.shape[0], grad_z)
        grads = buffers.grads
        # log_gamma and beta gradients of every flow, rows in generation order.
        norm_grads = grad_z.new_empty(2, flows, mades[0].features) if stack.norms else None
        log_det_forms = (grad_log_det.sum(), grad_log_det.mul(-4.0).unsqueeze(0))
        grad_xs = None
        norm_rows = (
            list(zip(norm_grads[0].unbind(0), norm_grads[1].unbind(0), strict=True))
            if norm_grads is not None
            else None
        )
        for t in reversed(range(flows)):
            grad_xs, grad_c = _flow_backward(
                stack,
                t,
                grad_y,
                log_det_forms,
                saved[t],
                t > 0 or input_grad,
                buffers.flows[t][0],
                norm_rows[t] if norm_rows is not None else None,
                buffers.flows[t][1],
            )
            if grad_c is not None and ctx.needs_input_grad[1]:
                grad_context = grad_c if grad_context is None else grad_context + grad_c
            if t > 0:
                grad_y = _reorder(mades[t], mades[t - 1], grad_xs)
        grad_x = _unsort(mades[0], grad_xs).t() if ctx.needs_input_grad[0] else None
        grad_context = grad_context.t() if grad_context is not None else None
        params = _weight_grads(stack, grads, ctx.layer_inputs)
        norm_params = _data_rows(norm_grads, ctx.norm_rows) if norm_grads is not None else None
        if stack.stacked is not None:  # (flows, ...) gradients, the stacks' own
            norms = norm_params.unbind(0) if norm_params is not None else ()
            return grad_x, grad_context, None, *params, *norms
        if norm_params is not None:
            log_gamma, beta = norm_params.unbind(0)
            for t, pair in enumerate(zip(log_gamma.unbind(0), beta.unbind(0), strict=True)):
                params[t] += pair
        return grad_x, grad_context, None, *[g for flow in params for g in flow]


def maf_stack(
    x: Tensor,
    context: Tensor | None,
    mades: Sequence[MADE],
    norms: Sequence[nn.Module],
    bound: float,
    shared_masks: bool = False,
    stacked: Sequence[Tensor] | None = None,
    cache: dict | None = None,
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
        stacked: With shared masks, the parameters the MADEs and batch norms borrow their
            rows from (:class:`~audioar.layers.borrowed.BorrowsParameters`), ``(flows,
            ...)`` each in :func:`_flow_params` order: the node then takes these as its
            inputs and returns their gradients whole.
        cache: A dict the caller keeps between calls (and clears when the parameters
            move): what evaluation without autograd derives from the batch norms
            (:func:`_frozen_columns`) and the large buffers of training (:func:`_kept`).

    Returns:
        ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|, as
        :meth:`MAF.forward` defines them; in training mode the running statistics of
        ``norms`` are updated.
    """
    if stacked is not None:
        if not shared_masks:
            raise ValueError("stacked parameters need every MADE to have the same masks")
        params = list(stacked)
    else:
        params = [p for t, made in enumerate(mades) for p in _flow_params(made, _at(norms, t))]
    tensors = [x, context, *params]
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    dropout = mades[0].dropout if mades[0].training else 0.0
    activation = mades[0].activation
    stack = _Stack(
        mades=list(mades),
        views=[made.block_views() for made in mades],
        norms=list(norms),
        bound=bound,
        activation=activation,
        batch_stats=bool(norms) and norms[0].training,
        dropout=dropout,
        shared_masks=shared_masks,
        stacked=stacked,
        cache=cache,
    )
    if not grad:
        with torch.no_grad():
            z, log_det, _, _, _ = _stack_forward(x, context, stack, save=False)
        return z, log_det
    return _MAFStack.apply(x, context, stack, *params)


def _at(norms: Sequence[nn.Module], t: int) -> nn.Module | None:
    return norms[t] if norms else None
