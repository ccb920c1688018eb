"""Block-triangular fast path for masked linear layers whose units are sorted by degree.

When the inputs and outputs of a MADE layer are sorted by degree, every row of its mask
allows a prefix of the columns, and the prefix only grows down the rows: the masked weight
is (block) lower-triangular. Splitting the rows into a few blocks and multiplying each by
only the columns it can see skips about half of the multiply-adds, in the forward pass and
in both backward products. A hand-written backward writes every block product straight
into its place (no zero-padded slice gradients), and applies the mask to the weight
gradient in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "triangular_blocks",
    "block_linear",
    "block_masked_linear",
    "activate_",
    "FUSED_ACTIVATIONS",
]

# Activations the fused layer applies in place (and differentiates from its output).
FUSED_ACTIVATIONS = ("identity", "tanh", "relu")

Blocks = list[tuple[int, int, int]]


def triangular_blocks(mask: Tensor, num_blocks: int = 4) -> Blocks:
    """Row blocks of a mask and the column prefix each one needs.

    Args:
        mask: ``(out_features, in_features)`` boolean mask.
        num_blocks: Number of (nearly equal) row blocks, default ``4``.

    Returns:
        ``[(row_start, row_end, col_end), ...]`` covering every row once; within a block
        all allowed columns lie in ``[0, col_end)``. Exact for any mask; it saves work
        when rows and columns are sorted by degree.
    """
    rows = mask.shape[0]
    cols = torch.arange(1, mask.shape[1] + 1)
    # Column prefix each row needs: 1 + the index of its last allowed column (0 if none).
    need = (mask.long() * cols).amax(dim=1) if mask.shape[1] > 0 else torch.zeros(rows)
    bounds = [round(i * rows / num_blocks) for i in range(num_blocks + 1)]
    blocks = []
    for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True):
        if r1 > r0:
            blocks.append((r0, r1, int(need[r0:r1].max())))
    return blocks


def _forward(x: Tensor, weight: Tensor, bias: Tensor | None, blocks: Blocks) -> Tensor:
    out = x.new_empty(x.shape[0], weight.shape[0])
    for r0, r1, c1 in blocks:
        target = out[:, r0:r1]
        if c1 == 0:
            target.zero_() if bias is None else target.copy_(bias[r0:r1].expand_as(target))
        elif bias is None:
            torch.mm(x[:, :c1], weight[r0:r1, :c1].t(), out=target)
        else:
            torch.addmm(bias[r0:r1], x[:, :c1], weight[r0:r1, :c1].t(), out=target)
    return out


def activate_(out: Tensor, activation: str) -> Tensor:
    """Apply one of :data:`FUSED_ACTIVATIONS` in place (tanh as ``2 sigmoid(2x) - 1``, which is
    about twice as fast as ``torch.tanh`` on CPU and equal to it within 2e-7)."""
    if activation == "tanh":
        out.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    elif activation == "relu":
        out.relu_()
    return out


class _BlockMaskedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, mask, bias, blocks, activation):  # noqa: ANN001, ANN205
        # Masked weight only where a block reads it, one contiguous tensor per block.
        parts = [weight[r0:r1, :c1] * mask[r0:r1, :c1] for r0, r1, c1 in blocks]
        out = x.new_empty(x.shape[0], weight.shape[0])
        for (r0, r1, c1), part in zip(blocks, parts, strict=True):
            target = out[:, r0:r1]
            if c1 == 0:
                target.zero_() if bias is None else target.copy_(bias[r0:r1].expand_as(target))
            elif bias is None:
                torch.mm(x[:, :c1], part.t(), out=target)
            else:
                torch.addmm(bias[r0:r1], x[:, :c1], part.t(), out=target)
        activate_(out, activation)
        ctx.save_for_backward(x, mask, out, *parts)
        ctx.blocks = blocks
        ctx.activation = activation
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, mask, out, *parts = ctx.saved_tensors
        blocks = ctx.blocks
        # Gradient before the activation, from the activation's output.
        if ctx.activation == "tanh":
            grad = torch.ops.aten.tanh_backward(grad, out)
        elif ctx.activation == "relu":
            grad = torch.ops.aten.threshold_backward(grad, out, 0)
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            for (r0, r1, c1), part in zip(blocks, parts, strict=True):
                if c1 > 0:
                    grad_x[:, :c1].addmm_(grad[:, r0:r1], part)
        if ctx.needs_input_grad[1]:
            grad_w = x.new_empty(mask.shape)
            for r0, r1, c1 in blocks:
                if c1 > 0:
                    block = grad_w[r0:r1, :c1]
                    torch.mm(grad[:, r0:r1].t(), x[:, :c1], out=block)
                    block.mul_(mask[r0:r1, :c1])
                grad_w[r0:r1, c1:].zero_()
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, None, grad_b, None, None


def block_masked_linear(
    x: Tensor,
    weight: Tensor,
    mask: Tensor,
    bias: Tensor | None,
    blocks: Blocks,
    activation: str = "identity",
) -> Tensor:
    """``act(F.linear(x, weight * mask, bias))``, skipping the all-zero blocks of the mask.

    Args:
        x: ``(batch, in_features)``.
        weight: ``(out_features, in_features)`` raw weight.
        mask: ``(out_features, in_features)`` 0/1 mask (the weight's dtype avoids a cast).
        bias: ``(out_features,)`` or ``None``.
        blocks: From :func:`triangular_blocks` on ``mask``.
        activation: One of :data:`FUSED_ACTIVATIONS`, applied in place; default
            ``"identity"``.

    Returns:
        ``(batch, out_features)``; same numbers as the dense masked product (up to rounding),
        and the same gradients for ``x``, ``bias`` and ``weight`` (zero where masked).
    """
    return _BlockMaskedLinear.apply(x.contiguous(), weight, mask, bias, blocks, activation)


def block_linear(x: Tensor, weight: Tensor, bias: Tensor | None, blocks: Blocks) -> Tensor:
    """``F.linear(x, weight, bias)`` for a weight that is zero outside ``blocks`` (no autograd).

    Args:
        x: ``(batch, in_features)``.
        weight: ``(out_features, in_features)``, already masked.
        bias: ``(out_features,)`` or ``None``.
        blocks: From :func:`triangular_blocks` on the mask of ``weight``.

    Returns:
        ``(batch, out_features)``, equal to ``F.linear(x, weight, bias)`` up to rounding.
    """
    return _forward(x.contiguous(), weight, bias, blocks)
