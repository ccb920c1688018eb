"""Block-triangular fast path for masked MLPs whose units are sorted by degree (MADE, MAF).

When the inputs and outputs of a MADE layer are sorted by degree, every row of its mask
allows a prefix of the columns, and the prefix only grows down the rows: the masked weight
is (block) lower-triangular. Splitting the rows into a few blocks and multiplying each by
only the columns it can see skips up to half of the multiply-adds (a quarter with the
default two blocks), in the forward pass and in both backward products.

The fast path relies on one invariant that :class:`~audioar.layers.MaskedLinear` and
:class:`~audioar.layers.BlockMaskedLinear` keep: **the raw weight is zero wherever the mask
is** (masked at initialisation and on loading, and every gradient it receives is masked,
so no standard optimiser moves those entries). The forward products then use the raw
weight as it is, and only the backward pass touches the mask: on each block's "staircase"
(the columns some but not all of its rows may see). ``BlockMaskedLinear`` (MADE's layer)
stores only the blocks, so the columns a whole block cannot see cost neither memory nor
optimiser work.

:func:`block_masked_mlp` runs a whole masked MLP as one autograd node with a hand-written
backward: one node instead of a dozen per layer, every block product written straight into
its place, activations (and dropout) applied in place. The plain reference is
``F.linear(x, weight * mask, bias)`` layer by layer; tests check that both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "Block",
    "BlockViews",
    "block_views",
    "triangular_blocks",
    "block_linear",
    "block_masked_mlp",
    "FUSED_ACTIVATIONS",
    "BoundProduct",
    "BoundInputGrad",
    "bind_product",
    "run_product",
    "bind_input_grad",
    "run_input_grad",
    "mlp_forward_t",
    "mlp_input_grads_t",
    "weight_grad_t",
    "block_weight_grads_t",
]

# Activations the fused path applies in place (and differentiates from its output).
FUSED_ACTIVATIONS = ("identity", "tanh", "relu")

# (row_start, row_end, col_full, col_end): rows [row_start, row_end) may see columns
# [0, col_full) all of them, some of [col_full, col_end), none from col_end on.
Block = tuple[int, int, int, int]


def triangular_blocks(mask: Tensor, num_blocks: int = 2) -> list[Block]:
    """Row blocks of a mask, the columns all their rows see and the columns any row sees.

    Args:
        mask: ``(out_features, in_features)`` boolean mask.
        num_blocks: Number of (nearly equal) row blocks, default ``2``.

    Returns:
        ``[(row_start, row_end, col_full, col_end), ...]`` covering every row once: within a
        block, ``mask[:, :col_full]`` is all ``True`` and ``mask[:, col_end:]`` all ``False``.
        Exact for any mask; it saves work when rows and columns are sorted by degree.
    """
    rows, cols = mask.shape
    bounds = [round(i * rows / num_blocks) for i in range(num_blocks + 1)]
    blocks = []
    for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True):
        if r1 <= r0:
            continue
        seen = mask[r0:r1].any(dim=0)
        allowed = mask[r0:r1].all(dim=0)
        col_end = int(torch.nonzero(seen).max()) + 1 if bool(seen.any()) else 0
        col_full = int(torch.argmin(allowed.int())) if not bool(allowed.all()) else cols
        blocks.append((r0, r1, min(col_full, col_end), col_end))
    return blocks


# Hidden pre-activations are produced already multiplied by this factor (the GEMM's alpha
# and beta do it for free): tanh(z) = 2 sigmoid(2z) - 1 then costs a sigmoid and two cheap
# passes, about half the time of ``torch.tanh`` on CPU (equal within 2e-7).
_PRESCALE = {"tanh": 2.0}


_CONSTANTS: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}


def constant(value: float, like: Tensor) -> Tensor:
    """``value`` as a cached 0-dim tensor with ``like``'s dtype and device (never modify it).

    An operation given a Python number first wraps it in a new tensor and converts that,
    which on a CPU costs about as much as the arithmetic on a ``(257, 100)`` tensor; the
    fast paths pass these constants instead.
    """
    key = (value, like.dtype, like.device)
    found = _CONSTANTS.get(key)
    if found is None:
        if len(_CONSTANTS) > 1024:  # e.g. 1 / n for many batch sizes
            _CONSTANTS.clear()
        found = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return found


def _activate_prescaled_(out: Tensor, activation: str) -> Tensor:
    """Finish an activation in place on ``_PRESCALE[activation] * z``."""
    if activation == "tanh":
        out.sigmoid_().mul_(constant(2.0, out)).sub_(constant(1.0, out))
    elif activation == "relu":
        out.relu_()
    return out


def _activation_backward(grad: Tensor, out: Tensor, activation: str) -> Tensor:
    """Gradient before an activation from the gradient after it and its output."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, out)
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, out, 0)
    return grad


def _activation_backward_into(into: Tensor, grad: Tensor, out: Tensor, activation: str) -> None:
    """:func:`_activation_backward`, written into ``into``."""
    if activation == "tanh":
        torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=into)
    elif activation == "relu":
        torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=into)
    else:
        into.copy_(grad)


@dataclass(frozen=True)
class BlockViews:
    """Per-block views of one masked layer's tensors, made once and reused call after call.

    They share storage with the parameters, so in-place optimiser updates show through;
    rebuild them when a parameter is replaced (``.to()``, ``.double()``): see
    :meth:`audioar.models.MADE.block_views`.
    """

    blocks: list[Block]
    out_features: int
    in_features: int
    weight: list[Tensor]  # (rows, col_end) per block: the columns the block sees
    bias: Tensor | None  # (out_features, 1): a column of the (features, batch) layout
    stair: list[Tensor | None]  # (rows, col_end - col_full) of the 0/1 mask, or None
    # The input gradient's plan, made once: (row_start, row_end, col_end, weight.T) per
    # block that sees any column, widest first (it writes, the others add).
    transposed: list[tuple[int, int, int, Tensor]] = field(default_factory=list)


def block_views(
    weights: Sequence[Tensor | Sequence[Tensor]],
    biases: Sequence[Tensor | None],
    masks: Sequence[Tensor] | None,
    blocks: Sequence[list[Block]],
) -> list[BlockViews]:
    """:class:`BlockViews` of every layer (detached views; no copies).

    Each entry of ``weights`` is a dense ``(out, in)`` weight, or the list of its blocks'
    ``(rows, col_end)`` weights as :class:`~audioar.layers.BlockMaskedLinear` stores them
    (then ``masks`` is needed, for the layer's shape). ``masks=None`` leaves out the
    staircase views (forward products only).
    """
    views = []
    masks = masks if masks is not None else [None] * len(weights)
    for weight, bias, mask, layer_blocks in zip(weights, biases, masks, blocks, strict=True):
        bias = bias.detach() if bias is not None else None
        if isinstance(weight, Tensor):
            shape = weight.shape
            w = [weight.detach()[r0:r1, :c1] for r0, r1, _, c1 in layer_blocks]
        else:
            shape = mask.shape
            w = [block.detach() for block in weight]
        views.append(
            BlockViews(
                blocks=list(layer_blocks),
                out_features=shape[0],
                in_features=shape[1],
                weight=w,
                transposed=sorted(
                    (
                        (r0, r1, c1, v.t())
                        for (r0, r1, _, c1), v in zip(layer_blocks, w, strict=True)
                        if c1 > 0
                    ),
                    key=lambda item: -item[2],
                ),
                bias=bias[:, None] if bias is not None else None,
                stair=[
                    mask.detach()[r0:r1, c0:c1] if mask is not None and c1 > c0 else None
                    for r0, r1, c0, c1 in layer_blocks
                ],
            )
        )
    return views


# The block products. They are written for the transposed, ``(features, batch)``, layout:
# there a block's input is a run of whole rows and its output a run of whole rows, so every
# operand is contiguous or a plain transpose of a contiguous tensor, which the GEMM kernels
# take faster than column slices. :mod:`audioar.models.maf_stack` keeps a whole
# MAF in this layout; the ``(batch, features)`` paths below pass transposed views.


@dataclass(frozen=True)
class BoundProduct:
    """One layer's block products bound to fixed input and output tensors.

    Every block's operands (its weight, the input rows it sees, its output rows) are views
    made once, for callers that run the same product on the same (kept) buffers call after
    call: slicing them anew each time costs small operations by the dozen per layer.
    """

    out: Tensor  # (out_features, batch)
    steps: tuple[tuple[Tensor, Tensor, Tensor], ...]  # (weight block, input rows, output rows)
    unseen: tuple[Tensor, ...]  # output rows of blocks that see no input
    bias: Tensor | None  # (out_features, 1)


def bind_product(h: Tensor, layer: BlockViews, out: Tensor) -> BoundProduct:
    """:class:`BoundProduct` of ``layer``: ``h`` ``(in, batch)`` -> ``(out, batch)`` ``out``."""
    full = h.shape[0]
    steps, unseen = [], []
    for (r0, r1, _, c1), w in zip(layer.blocks, layer.weight, strict=True):
        if c1 == 0:
            unseen.append(out[r0:r1])
        else:
            steps.append((w, h if c1 == full else h[:c1], out[r0:r1]))
    return BoundProduct(out, tuple(steps), tuple(unseen), layer.bias)


def run_product(bound: BoundProduct, scale: float = 1.0) -> Tensor:
    """``scale * (weight @ h + bias[:, None])`` into ``bound.out``, which it returns.

    Each block's product is written straight into its rows, the bias added once for the
    whole layer (one pass instead of a broadcast copy per block before its product).
    """
    for rows in bound.unseen:
        rows.zero_()
    if scale == 1.0:
        for w, seen, rows in bound.steps:
            torch.mm(w, seen, out=rows)
    else:  # beta=0: the (uninitialised) rows are not read
        for w, seen, rows in bound.steps:
            torch.addmm(rows, w, seen, beta=0.0, alpha=scale, out=rows)
    if bound.bias is not None:
        bound.out.add_(bound.bias, alpha=scale)
    return bound.out


def _block_product_t(
    h: Tensor, layer: BlockViews, scale: float = 1.0, out: Tensor | None = None
) -> Tensor:
    """``scale * (weight @ h + bias[:, None])`` for ``h`` ``(in, batch)``: ``(out, batch)``."""
    if out is None:
        out = h.new_empty(layer.out_features, h.shape[1])
    return run_product(bind_product(h, layer, out), scale)


@dataclass(frozen=True)
class BoundInputGrad:
    """``weight.T @ grad`` of one layer bound to fixed tensors (see :class:`BoundProduct`)."""

    out: Tensor  # (in_features, batch)
    tail: Tensor | None  # rows of out that no block sees: zero
    # (weight.T, grad rows, out rows) per block that sees any column, widest first
    steps: tuple[tuple[Tensor, Tensor, Tensor], ...]


def bind_input_grad(grad: Tensor, layer: BlockViews, out: Tensor) -> BoundInputGrad:
    """:class:`BoundInputGrad` of ``layer``: ``grad`` ``(out, batch)``, ``out`` ``(in, batch)``."""
    rows = layer.in_features
    plan = layer.transposed  # widest first: it writes, the others add
    widest = plan[0][2] if plan else 0
    steps = tuple((w_t, grad[r0:r1], out if c1 == rows else out[:c1]) for r0, r1, c1, w_t in plan)
    return BoundInputGrad(out, out[widest:] if widest < rows else None, steps)


def run_input_grad(bound: BoundInputGrad) -> Tensor:
    """``weight.T @ grad`` for a weight zero outside the blocks into ``bound.out``."""
    if bound.tail is not None:
        bound.tail.zero_()
    if bound.steps:
        w_t, grad, rows = bound.steps[0]
        torch.mm(w_t, grad, out=rows)
        for w_t, grad, rows in bound.steps[1:]:
            rows.addmm_(w_t, grad)
    return bound.out


def _input_grad_t(grad: Tensor, layer: BlockViews) -> Tensor:
    """``weight.T @ grad`` for a weight zero outside the blocks: ``(in, batch)``."""
    out = grad.new_empty(layer.in_features, grad.shape[1])
    return run_input_grad(bind_input_grad(grad, layer, out))


def _block_product(x: Tensor, layer: BlockViews, scale: float = 1.0) -> Tensor:
    """:func:`_block_product_t` for ``x`` ``(batch, in)``: ``(batch, out)`` (a transposed view)."""
    return _block_product_t(x.t(), layer, scale).t()


def _weight_grad(grad: Tensor, x: Tensor, layer: BlockViews) -> Tensor:
    """``grad.T @ x`` masked, ``grad`` ``(batch, out)``, ``x`` ``(batch, in)``: ``(out, in)``."""
    return weight_grad_t(grad.t(), x.t(), layer)


def _input_grad(grad: Tensor, layer: BlockViews) -> Tensor:
    """``grad @ weight`` for ``grad`` ``(batch, out)``: ``(batch, in)`` (a transposed view)."""
    return _input_grad_t(grad.t(), layer).t()


def _mlp_forward(
    x: Tensor, views: Sequence[BlockViews], activation: str, dropout: float
) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
    """Layer inputs, hidden outputs before dropout, and dropout multipliers (or ``None``)."""
    inputs, hidden, drops = [x], [], []
    h = x
    last = len(views) - 1
    for i, layer in enumerate(views):
        scale = 1.0 if i == last else _PRESCALE.get(activation, 1.0)
        h = _block_product(h, layer, scale)
        if i == last:
            inputs.append(h)
            break
        _activate_prescaled_(h, activation)
        hidden.append(h)
        if dropout > 0:
            keep = h.new_empty(h.shape).bernoulli_(1.0 - dropout).div_(1.0 - dropout)
            drops.append(keep)
            h = h * keep
        else:
            drops.append(None)
        inputs.append(h)
    return inputs, hidden, drops


class _BlockMaskedMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, views, activation, dropout, stored, *params):  # noqa: ANN001, ANN205
        inputs, hidden, drops = _mlp_forward(x, views, activation, dropout)
        keeps = [d for d in drops if d is not None]
        # The parameters are saved only for autograd's check that nobody changed them in
        # place before the backward pass; the products read the views.
        ctx.save_for_backward(*inputs[:-1], *hidden, *keeps, *params)
        ctx.views = views
        ctx.activation = activation
        ctx.dropped = [d is not None for d in drops]
        ctx.stored = stored
        return inputs[-1]

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        n = len(ctx.views)
        saved = list(ctx.saved_tensors)
        inputs, hidden = saved[:n], saved[n : 2 * n - 1]
        keeps = iter(saved[2 * n - 1 : 2 * n - 1 + sum(ctx.dropped)])
        drops = [next(keeps) if dropped else None for dropped in ctx.dropped]
        # Parameters per layer: its weight (dense, or one tensor per stored block), its bias.
        sizes = [(len(v.blocks) if ctx.stored else 1) + 1 for v in ctx.views]
        starts = [sum(sizes[:i]) for i in range(n)]
        needs = ctx.needs_input_grad[5:]
        grads: list[Tensor | None] = [None] * sum(sizes)
        grad = grad.contiguous()
        grad_x = None
        for i in reversed(range(n)):
            layer = ctx.views[i]
            first, bias = starts[i], starts[i] + sizes[i] - 1
            if needs[bias]:
                grads[bias] = grad.sum(0)
            if any(needs[first:bias]):
                if ctx.stored:
                    grads[first:bias] = block_weight_grads_t(grad.t(), inputs[i].t(), layer)
                else:
                    grads[first] = _weight_grad(grad, inputs[i], layer)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            grad_in = _input_grad(grad, layer)
            if i == 0:
                grad_x = grad_in
                break
            if drops[i - 1] is not None:
                grad_in.mul_(drops[i - 1])
            grad = _activation_backward(grad_in, hidden[i - 1], ctx.activation)
        return grad_x, None, None, None, None, *grads


def block_masked_mlp(
    x: Tensor,
    weights: Sequence[Tensor] | Sequence[Sequence[Tensor]],
    biases: Sequence[Tensor | None],
    masks: Sequence[Tensor],
    blocks: Sequence[list[Block]],
    activation: str = "relu",
    dropout: float = 0.0,
    views: Sequence[BlockViews] | None = None,
) -> Tensor:
    """A masked MLP, ``act(... act(x @ W1.T + b1) ...) @ WL.T + bL``, as one autograd node.

    Hidden layers use ``activation`` (then dropout with probability ``dropout``, scaled
    by ``1 / (1 - dropout)``); the last layer is linear.

    Args:
        x: ``(batch, in_features)``.
        weights: ``(out_l, in_l)`` raw weights, **zero wherever** ``masks`` is (the invariant
            :class:`~audioar.layers.MaskedLinear` keeps); or, for every layer, the list of
            its blocks' ``(rows, col_end)`` weights (:class:`~audioar.layers.BlockMaskedLinear`),
            which then get one gradient each.
        biases: ``(out_l,)`` or ``None`` per layer.
        masks: ``(out_l, in_l)`` 0/1 masks in the weights' dtype (the backward pass masks
            weight gradients with them); only read to make ``views`` when it is ``None``.
        blocks: Per layer, from :func:`triangular_blocks` on its mask.
        activation: One of :data:`FUSED_ACTIVATIONS`, default ``"relu"``.
        dropout: Dropout probability on hidden units, default ``0.0``.
        views: :func:`block_views` of these tensors, when the caller keeps them from call
            to call (they cost a few dozen small operations per layer to make); default
            ``None`` makes them.

    Returns:
        ``(batch, out_features)``; the numbers and gradients of the dense masked MLP (up to
        rounding), with weight gradients zero where masked.
    """
    if views is None:
        views = block_views(weights, biases, masks, blocks)
    x = x.contiguous()
    stored = not isinstance(weights[0], Tensor)
    params = [
        p
        for weight, bias in zip(weights, biases, strict=True)
        for p in ([*weight, bias] if stored else [weight, bias])
    ]
    if not torch.is_grad_enabled() or not (
        x.requires_grad or any(p is not None and p.requires_grad for p in params)
    ):
        return _mlp_forward(x, views, activation, dropout)[0][-1]
    return _BlockMaskedMLP.apply(x, list(views), activation, dropout, stored, *params)


def mlp_forward_t(
    h: Tensor,
    views: Sequence[BlockViews],
    activation: str,
    outs: Sequence[Tensor] | None = None,
    keeps: Sequence[Tensor] | None = None,
    bound: Sequence[BoundProduct] | None = None,
) -> list[Tensor]:
    """A masked MLP in the ``(features, batch)`` layout, keeping what its backward needs.

    Args:
        h: ``(in_features, batch)`` contiguous input.
        views: :func:`block_views` of the layers (weights zero where masked).
        activation: One of :data:`FUSED_ACTIVATIONS`, for the hidden layers.
        outs: Optional contiguous ``(units, batch)`` tensors, one per hidden layer, to
            write the next layer's inputs into.
        keeps: Optional dropout multipliers ``(units, batch)`` per hidden layer (0 or
            ``1 / (1 - p)``), applied after the activation.
        bound: Optional :func:`bind_product` of every layer, made on ``h``, ``outs`` and a
            tensor for the output (without ``keeps``), for callers that keep them.

    Returns:
        ``[h, hidden_1, ..., hidden_{L-1}, output]``: the input, every hidden layer's
        output ``(units, batch)`` (before dropout) and the last layer's (linear) output
        ``(out, batch)``. Without ``keeps`` the hidden outputs are the next layers' inputs
        (in ``outs`` when given); with them, those inputs are the outputs times ``keeps``.
    """
    values = [h]
    last = len(views) - 1
    scale = _PRESCALE.get(activation, 1.0)
    for i, layer in enumerate(views):
        if i == last:
            values.append(run_product(bound[i]) if bound else _block_product_t(h, layer))
            break
        out = outs[i] if outs is not None else None
        if bound:
            h = run_product(bound[i], scale)
        else:
            h = _block_product_t(h, layer, scale, None if keeps else out)
        _activate_prescaled_(h, activation)
        values.append(h)
        if keeps is not None:
            h = torch.mul(h, keeps[i], out=out) if out is not None else h * keeps[i]
    return values


def mlp_input_grads_t(
    grads: Sequence[Tensor],
    values: Sequence[Tensor],
    views: Sequence[BlockViews],
    activation: str,
    input_grad: bool,
    keeps: Sequence[Tensor] | None = None,
    bound: Sequence[BoundInputGrad] | None = None,
) -> Tensor | None:
    """Backward of :func:`mlp_forward_t` through the layers' inputs (no weight gradients).

    Args:
        grads: Per layer, a contiguous ``(out_l, batch)`` tensor for the gradient of that
            layer's (pre-activation) output; the last one holds the gradient of the MLP's
            output, the others are filled here.
        values: What :func:`mlp_forward_t` returned (its last entry is not read).
        views: The same views.
        activation: The same activation.
        input_grad: Whether to compute the gradient of the input.
        keeps: The same dropout multipliers, if any.
        bound: Optional :func:`bind_input_grad` of every layer, made on ``grads`` and a
            tensor per layer for its input gradient, for callers that keep them.

    Returns:
        The gradient of the input ``(in, batch)``, or ``None``. With ``grads`` and the
        layers' inputs, :func:`weight_grad_t` gives the weight gradients.
    """
    for i in reversed(range(0 if input_grad else 1, len(views))):
        grad_in = run_input_grad(bound[i]) if bound else _input_grad_t(grads[i], views[i])
        if i == 0:
            return grad_in
        if keeps is not None:
            grad_in.mul_(keeps[i - 1])
        _activation_backward_into(grads[i - 1], grad_in, values[i], activation)
    return None


def weight_grad_t(grad: Tensor, h: Tensor, layer: BlockViews, out: Tensor | None = None) -> Tensor:
    """One layer's weight gradient, ``grad @ h.T`` masked, from the ``(features, batch)`` layout.

    Args:
        grad: ``(out, batch)`` gradient of the layer's output, or ``(flows, out, batch)``
            for a stack of layers that share ``layer``'s blocks and masks.
        h: ``(in, batch)`` (or ``(flows, in, batch)``) the layer's input.
        layer: :func:`block_views` of the layer (of any one of the stack).
        out: Optional contiguous tensor of the result's shape to write into.

    Returns:
        ``(out, in)`` (or ``(flows, out, in)``), zero where masked. A stack runs one batched
        product per block: on a CPU those keep every core on its own product, faster than a
        product per layer.
    """
    cols = layer.in_features
    grad_w = out if out is not None else grad.new_empty(*grad.shape[:-2], layer.out_features, cols)
    product = torch.bmm if grad.dim() == 3 else torch.mm
    for (r0, r1, c0, c1), stair in zip(layer.blocks, layer.stair, strict=True):
        rows = grad_w[..., r0:r1, :]
        if c1 > 0:
            product(grad[..., r0:r1, :], h[..., :c1, :].transpose(-1, -2), out=rows[..., :c1])
        if stair is not None:
            rows[..., c0:c1].mul_(stair)
        if c1 < cols:
            rows[..., c1:].zero_()
    return grad_w


def block_weight_grads_t(
    grad: Tensor, h: Tensor, layer: BlockViews, outs: Sequence[Tensor] | None = None
) -> list[Tensor]:
    """:func:`weight_grad_t` for a layer stored as blocks: each block's ``(rows, col_end)``.

    Args:
        grad: ``(out, batch)`` gradient of the layer's output, or ``(flows, out, batch)``
            for a stack of layers that share ``layer``'s blocks and masks.
        h: ``(in, batch)`` (or ``(flows, in, batch)``) the layer's input.
        layer: :func:`block_views` of the layer (of any one of the stack).
        outs: Optional contiguous tensors of the results' shapes to write into.

    Returns:
        Per block, ``(rows, col_end)`` (or ``(flows, rows, col_end)``), zero where masked;
        contiguous, which the batched products fill faster than the strided rows of a dense
        gradient.
    """
    product = torch.bmm if grad.dim() == 3 else torch.mm
    grads = []
    for j, ((r0, r1, c0, c1), stair) in enumerate(zip(layer.blocks, layer.stair, strict=True)):
        out = outs[j] if outs is not None else grad.new_empty(*grad.shape[:-2], r1 - r0, c1)
        if c1 > 0:
            product(grad[..., r0:r1, :], h[..., :c1, :].transpose(-1, -2), out=out)
        if stair is not None:
            out[..., c0:].mul_(stair)
        grads.append(out)
    return grads


def block_linear(x: Tensor, weight: Tensor, bias: Tensor | None, blocks: list[Block]) -> Tensor:
    """``F.linear(x, weight, bias)`` for a weight that is zero outside ``blocks`` (no autograd).

    Args:
        x: ``(batch, in_features)``.
        weight: ``(out_features, in_features)``, zero where masked.
        bias: ``(out_features,)`` or ``None``.
        blocks: From :func:`triangular_blocks` on the mask of ``weight``.

    Returns:
        ``(batch, out_features)``, equal to ``F.linear(x, weight, bias)`` up to rounding.
    """
    (views,) = block_views([weight], [bias], None, [blocks])
    return _block_product(x.contiguous(), views)
