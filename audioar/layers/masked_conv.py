"""Masked 2-D convolution of the PixelCNN, with its masks as pure functions.

Pixels are generated in raster order (row by row, left to right). A masked ``k x k``
convolution lets output pixel ``(i, j)`` see only the input pixels before it: the rows above
the centre, and the pixels left of the centre in its own row. The centre pixel is cut in
the first layer (mask type ``"A"``: the prediction of ``x[i, j]`` must not see ``x[i, j]``)
and kept in later layers (type ``"B"``: their input at ``(i, j)`` already depends only on
pixels before ``(i, j)``).

With ``channel_groups > 1`` the channels of a pixel are ordered too (R -> G -> B for
``3``): input and output channels are split into that many contiguous groups, and at the
centre an output group sees the input groups before it (type ``"A"``) or up to and
including its own (type ``"B"``). Off the centre every channel sees every channel.

Stacks of these convolutions have a *blind spot*: pixels up and to the right of ``(i, j)``
that no path reaches (:mod:`audioar.layers.pixelcnn_blocks` removes it).

References:
    van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", NIPS 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import BoolTensor, Tensor, nn

from audioar.errors import ConfigError

__all__ = ["MASK_TYPES", "channel_group", "pixelcnn_mask", "MaskedConv2d"]

MASK_TYPES = ("A", "B")


def _kernel_pair(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ConfigError(f"masked kernel_size must be odd and >= 1, got {kernel_size}")
    return int(kh), int(kw)


def channel_group(channels: int, groups: int) -> Tensor:
    """Group index ``0..groups-1`` of each of ``channels`` channels (contiguous blocks).

    Raises:
        ConfigError: ``channels`` is not a multiple of ``groups``.
    """
    if groups < 1 or channels % groups:
        raise ConfigError(f"{channels} channels do not split into {groups} channel groups")
    return torch.arange(channels) // (channels // groups)


def pixelcnn_mask(
    kernel_size: int | tuple[int, int],
    mask_type: str = "B",
    in_channels: int = 1,
    out_channels: int = 1,
    channel_groups: int = 1,
) -> BoolTensor:
    """The connectivity of a PixelCNN masked convolution.

    Args:
        kernel_size: ``k`` or ``(kh, kw)``, odd.
        mask_type: ``"A"`` (centre pixel cut: the first layer) or ``"B"`` (centre kept).
        in_channels: input channels (default ``1``).
        out_channels: output channels (default ``1``).
        channel_groups: ordered groups of channels at the centre pixel (default ``1``:
            every channel of a pixel is predicted from the pixels before it only).

    Returns:
        ``(out_channels, in_channels, kh, kw)`` boolean, shaped like ``nn.Conv2d.weight``:
        ``True`` on the rows above the centre, left of the centre in its row, and at the
        centre where the channel groups allow.

    Example:
        >>> pixelcnn_mask(3, "A")[0, 0].int()
        tensor([[1, 1, 1],
                [1, 0, 0],
                [0, 0, 0]], dtype=torch.int32)
    """
    if mask_type not in MASK_TYPES:
        raise ConfigError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = _kernel_pair(kernel_size)
    g_in = channel_group(in_channels, channel_groups)
    g_out = channel_group(out_channels, channel_groups)
    mask = torch.zeros(out_channels, in_channels, kh, kw, dtype=torch.bool)
    ch, cw = kh // 2, kw // 2
    mask[:, :, :ch, :] = True
    mask[:, :, ch, :cw] = True
    if mask_type == "A":
        mask[:, :, ch, cw] = g_out[:, None] > g_in[None, :]
    else:
        mask[:, :, ch, cw] = g_out[:, None] >= g_in[None, :]
    return mask


class MaskedConv2d(nn.Conv2d):
    """A ``'same'``-padded :class:`torch.nn.Conv2d` whose weight is multiplied by a mask.

    Over ``(batch, in_channels, height, width)``; output pixel ``(i, j)`` depends only on
    the input pixels before it in raster order (and on the centre per ``mask_type``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: ``k`` or ``(kh, kw)``, odd.
        mask_type: ``"A"`` (first layer, centre cut) or ``"B"`` (later layers, default).
        channel_groups: ordered channel groups at the centre (default ``1``), see
            :func:`pixelcnn_mask`.
        bias: whether to add a learned bias (default ``True``).

    References:
        van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", 2016.

    Example:
        >>> conv = MaskedConv2d(1, 8, 5, mask_type="A")
        >>> conv(torch.randn(2, 1, 10, 12)).shape
        torch.Size([2, 8, 10, 12])
    """

    mask: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str = "B",
        channel_groups: int = 1,
        bias: bool = True,
    ) -> None:
        kh, kw = _kernel_pair(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.mask_type = mask_type
        mask = pixelcnn_mask((kh, kw), mask_type, in_channels, out_channels, channel_groups)
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        """Masked convolution.

        Args:
            x: ``(batch, in_channels, height, width)``.

        Returns:
            ``(batch, out_channels, height, width)``.
        """
        weight = self.weight * self.mask.to(self.weight.dtype)
        return F.conv2d(x, weight, self.bias, padding=self.padding)
