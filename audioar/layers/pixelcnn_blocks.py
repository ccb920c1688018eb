"""The gated PixelCNN block (vertical and horizontal stacks), its incremental stepper, and
the plain masked-convolution stack it replaces.

A stack of masked ``k x k`` convolutions misses a wedge of pixels up and to the right of
the one it predicts (the *blind spot*). The gated block splits the receptive field in two:

* the **vertical stack** sees whole rows: a ``(k//2 + 1) x k`` convolution over rows
  ``r - k//2 .. r`` (no mask). Its output at row ``r`` depends on input rows ``<= r``, and
  it never reads the horizontal stack.
* the **horizontal stack** sees the current row left of the pixel: a ``1 x (k//2 + 1)``
  convolution over columns ``c - k//2 .. c``, the input shifted right by one pixel in the
  first block so that ``x[i, j]`` itself is not seen.
* the vertical stack feeds the horizontal one through a ``1 x 1`` convolution, shifted down
  by one row first so that row ``i`` of the horizontal stack only gets rows ``< i``.

Both stacks end in the gated unit ``tanh(a) * sigmoid(b)``; a class embedding ``V h`` is
added to both halves of both gates. The horizontal stack has a residual connection (from
the second block on) and a skip output that the model sums over blocks.

With ``L`` blocks and ``h = k // 2``, the prediction of pixel ``(i, j)`` sees exactly the
pixels ``(i, j - L h - 1 .. j - 1)`` and the rectangle of rows ``i - L h - 1 .. i - 1``,
columns ``j - L h .. j + L h`` (clipped to the image): no blind spot.

:class:`GatedStackStepper` runs the same blocks incrementally for generation: each row's
vertical stack is computed once, when the row above is complete, and each new pixel costs
one column of the horizontal stack per block.

References:
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", NIPS 2016.
    Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError
from audioar.layers.gated import gated_activation
from audioar.layers.masked_conv import MaskedConv2d

__all__ = [
    "shift_down",
    "shift_right",
    "GatedPixelBlock",
    "GatedStackStepper",
    "PlainMaskedStack",
]


def shift_down(x: Tensor, rows: int = 1) -> Tensor:
    """``x`` moved down by ``rows`` (zeros enter at the top), ``(..., height, width)``."""
    return F.pad(x, (0, 0, rows, 0))[..., : x.shape[-2], :]


def shift_right(x: Tensor, cols: int = 1) -> Tensor:
    """``x`` moved right by ``cols`` (zeros enter on the left), ``(..., width)``."""
    return F.pad(x, (cols, 0))[..., : x.shape[-1]]


def _check_kernel(kernel_size: int) -> int:
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ConfigError(f"PixelCNN kernel_size must be odd and >= 3, got {kernel_size}")
    return kernel_size // 2


class GatedPixelBlock(nn.Module):
    """One gated PixelCNN layer: vertical and horizontal stacks, gates, residual and skip.

    Args:
        in_channels: channels of the block's inputs (the image's for the first block).
        channels: channels of both stacks' outputs and of the skip output.
        kernel_size: odd ``k >= 3`` (default ``3``): vertical kernel ``(k//2 + 1) x k``,
            horizontal kernel ``1 x (k//2 + 1)``.
        first: the first block (default ``False``): its horizontal input is shifted right
            by one pixel (the pixel being predicted is cut) and it has no residual.
        dropout: dropout on the horizontal gate's output in training (default ``0.0``), the
            regulariser of PixelCNN++ for small data sets; never applied in eval mode or by
            :class:`GatedStackStepper`.

    References:
        van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.

    Example:
        >>> block = GatedPixelBlock(1, 16, kernel_size=5, first=True)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> v, h, skip = block(x, x)
        >>> v.shape, h.shape, skip.shape
        (torch.Size([2, 16, 8, 8]), torch.Size([2, 16, 8, 8]), torch.Size([2, 16, 8, 8]))
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.half = _check_kernel(kernel_size)
        self.in_channels = in_channels
        self.channels = channels
        self.first = first
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"PixelCNN dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        c2 = 2 * channels
        self.v_conv = nn.Conv2d(in_channels, c2, (self.half + 1, kernel_size))
        self.h_conv = nn.Conv2d(in_channels, c2, (1, self.half + 1))
        self.v_to_h = nn.Conv2d(c2, c2, 1)
        # Residual and skip 1 x 1 convolutions fused into one.
        self.out = nn.Conv2d(channels, 2 * channels, 1)

    def forward(
        self, v: Tensor, h: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Full path.

        Args:
            v: vertical-stack input ``(batch, in_channels, height, width)``.
            h: horizontal-stack input, same shape.
            cond: conditioning ``(batch, 4 * channels)`` added to the gates (vertical
                halves first, then horizontal), or ``None``.

        Returns:
            ``(v, h, skip)``, each ``(batch, channels, height, width)``.
        """
        half, c2 = self.half, 2 * self.channels
        v_pre = self.v_conv(F.pad(v, (half, half, half, 0)))
        h_src = shift_right(h) if self.first else h
        # The vertical stack's row r has seen input row r: row r feeds horizontal row r + 1.
        h_pre = self.h_conv(F.pad(h_src, (half, 0))) + shift_down(self.v_to_h(v_pre))
        if cond is not None:
            v_pre = v_pre + cond[:, :c2, None, None]
            h_pre = h_pre + cond[:, c2:, None, None]
        gate = gated_activation(h_pre, dim=1)
        if self.dropout > 0:
            gate = F.dropout(gate, self.dropout, self.training)
        rs = self.out(gate)
        r, skip = rs.chunk(2, dim=1)
        return gated_activation(v_pre, dim=1), (r if self.first else h + r), skip


class GatedStackStepper:
    """Incremental state of a stack of :class:`GatedPixelBlock` for raster-order generation.

    Call :meth:`begin_row` at the start of every row, then per pixel :meth:`column` (the
    summed skip outputs at that pixel, from the pixels before it) and :meth:`write` (the
    pixel's encoded value). The numbers equal the full path's.

    Per row, :meth:`begin_row` runs the vertical stack once over the completed row above
    (one ``1``-row convolution per block); per pixel, :meth:`column` computes one column of
    the horizontal stack per block from cached left neighbours: no work is repeated. The
    horizontal buffers are kept channels-last, so a block's window of ``k//2 + 1`` columns
    is one contiguous view and its convolution one ``addmm``.

    Args:
        blocks: the stack, first block first (weights are read when the stepper is made:
            make a new one after changing them).
        batch: images generated together.
        height: image rows.
        width: image columns.
        cond: conditioning per block ``(batch, blocks, 4 * channels)``, or ``None``.

    Example:
        >>> blocks = [GatedPixelBlock(1, 8, 3, first=True), GatedPixelBlock(8, 8, 3)]
        >>> stepper = GatedStackStepper(blocks, batch=2, height=4, width=4)
        >>> stepper.begin_row(0)
        >>> stepper.column(0).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        blocks: list[GatedPixelBlock] | nn.ModuleList,
        batch: int,
        height: int,
        width: int,
        cond: Tensor | None = None,
    ) -> None:
        self.blocks = list(blocks)
        weight = self.blocks[0].h_conv.weight
        like = {"device": weight.device, "dtype": weight.dtype}
        self.half, self.c = self.blocks[0].half, self.blocks[0].channels
        self.batch, self.width = batch, width
        half, c2 = self.half, 2 * self.c
        # Vertical inputs of each block (the image for the first), padded like the full path:
        # row r sits at r + half, column c at c + half.
        self.v_in = [
            torch.zeros(batch, b.in_channels, height + half, width + 2 * half, **like)
            for b in self.blocks
        ]
        # Horizontal inputs of the current row, (batch, column, channel); column c sits at
        # c + half (+ 1 for the first block: its input is the image shifted right by one).
        self.h_in = [
            torch.zeros(batch, width + half + int(b.first), b.in_channels, **like)
            for b in self.blocks
        ]
        # Per block and column of the current row, everything of the horizontal gate that does
        # not depend on the row itself: the shifted vertical stack, the bias, the class.
        self.vh = [torch.zeros(batch, width, c2, **like) for _ in self.blocks]
        self.cond_v = None if cond is None else cond[:, :, :c2]
        self.cond_h = None if cond is None else cond[:, :, c2:]
        # (2c, in, 1, k//2+1) -> (column-major window, 2c): the window is (column, channel).
        self.h_weight_t = [
            b.h_conv.weight.detach()[:, :, 0].permute(2, 1, 0).reshape(-1, c2).contiguous()
            for b in self.blocks
        ]
        self.out_weight_t = [
            b.out.weight.detach()[:, :, 0, 0].t().contiguous() for b in self.blocks
        ]
        self.out_bias = [b.out.bias.detach() for b in self.blocks]

    def begin_row(self, i: int) -> None:
        """Starts row ``i``: runs the vertical stack over row ``i - 1`` (complete by now)."""
        for buffer in self.h_in:
            buffer.zero_()
        r, half, last = i - 1, self.half, len(self.blocks) - 1
        for n, block in enumerate(self.blocks):
            vh = block.h_conv.bias.detach().expand(self.batch, -1)
            if self.cond_h is not None:
                vh = vh + self.cond_h[:, n]
            vh = vh.unsqueeze(1)  # (batch, 1, 2c)
            if i > 0:  # nothing above row 0: the shifted vertical contribution is zero there
                window = self.v_in[n][:, :, r : r + half + 1]  # input rows r - half .. r
                v_pre = F.conv2d(window, block.v_conv.weight, block.v_conv.bias)[:, :, 0]
                v_h = F.conv1d(v_pre, block.v_to_h.weight[:, :, :, 0], block.v_to_h.bias)
                vh = vh + v_h.transpose(1, 2)
                if n < last:
                    if self.cond_v is not None:
                        v_pre = v_pre + self.cond_v[:, n, :, None]
                    v_out = gated_activation(v_pre, dim=1)
                    self.v_in[n + 1][:, :, r + half, half : half + self.width] = v_out
            self.vh[n] = vh.expand(self.batch, self.width, -1).contiguous()

    def column(self, j: int) -> Tensor:
        """Summed skip outputs ``(batch, channels)`` at pixel ``j`` of the current row."""
        half, c, last = self.half, self.c, len(self.blocks) - 1
        skip = None
        for n in range(last + 1):
            h_in = self.h_in[n]
            window = h_in[:, j : j + half + 1].reshape(self.batch, -1)
            a, b = torch.addmm(self.vh[n][:, j], window, self.h_weight_t[n]).chunk(2, dim=1)
            rs = torch.addmm(
                self.out_bias[n], torch.tanh(a).mul_(torch.sigmoid(b)), self.out_weight_t[n]
            )
            r, s = rs[:, :c], rs[:, c:]
            skip = s if skip is None else skip.add_(s)
            if n < last:
                self.h_in[n + 1][:, j + half] = r if n == 0 else h_in[:, j + half] + r
        return skip

    def write(self, i: int, j: int, value: Tensor) -> None:
        """Stores the encoded pixel ``(i, j)``, ``(batch, in_channels)``, once it is known."""
        half = self.half
        self.v_in[0][:, :, i + half, j + half] = value
        self.h_in[0][:, j + half + 1] = value


class PlainMaskedStack(nn.Module):
    """The original PixelCNN stack: masked convolutions with ReLUs and residuals.

    A type-``"A"`` ``k x k`` masked convolution, then ``num_layers - 1`` residual layers
    ``h + conv_B(relu(h))``; conditioning is a per-layer bias. Kept as the reference that
    shows the blind spot the gated blocks remove.

    Args:
        in_channels: image channels.
        channels: hidden channels.
        num_layers: masked convolutions in the stack.
        kernel_size: odd ``k >= 3``.

    Example:
        >>> stack = PlainMaskedStack(1, 8, num_layers=3, kernel_size=3)
        >>> stack(torch.randn(2, 1, 6, 6)).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(self, in_channels: int, channels: int, num_layers: int, kernel_size: int) -> None:
        super().__init__()
        _check_kernel(kernel_size)
        self.channels = channels
        self.layers = nn.ModuleList(
            [MaskedConv2d(in_channels, channels, kernel_size, "A")]
            + [MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(num_layers - 1)]
        )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Full path.

        Args:
            x: image ``(batch, in_channels, height, width)``.
            cond: per-layer biases ``(batch, num_layers, channels)``, or ``None``.

        Returns:
            ``(batch, channels, height, width)``; pixel ``(i, j)`` depends on input pixels
            before ``(i, j)`` only (not on all of them: the blind spot).
        """
        h = None
        for n, layer in enumerate(self.layers):
            h = layer(x) if h is None else h + layer(F.relu(h))
            if cond is not None:
                h = h + cond[:, n, :, None, None]
        return h
