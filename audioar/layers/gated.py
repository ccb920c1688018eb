"""Gated activation and the WaveNet residual block (dilated causal conv, gate, residual, skip)."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.layers.causal_conv import CausalConv1d, ConvQueue

__all__ = ["gated_activation", "GatedResidualBlock"]


def gated_activation(x: Tensor, dim: int = 1) -> Tensor:
    """Gated unit ``tanh(a) * sigmoid(b)`` of the two halves ``a, b`` of ``x``.

    Args:
        x: pre-activations with an even size ``2 * channels`` along ``dim``.
        dim: dimension holding the two halves (default ``1``, the channels of
            ``(batch, channels, time)``).

    Returns:
        ``tanh(a) * sigmoid(b)``, half the size of ``x`` along ``dim``.

    References:
        van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016.
    """
    a, b = x.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedResidualBlock(nn.Module):
    """One WaveNet layer: dilated causal conv, conditioning, gate, residual and skip outputs.

    ``a = conv(h) + cond``; ``z = tanh(a_1) * sigmoid(a_2)``; a 1x1 convolution maps ``z`` to
    both the residual update (``h + W_r z``, the next layer's input) and the skip output
    (``W_s z``, summed over layers by the model). Conditioning (class embedding, upsampled
    local features) is computed by the caller and added to the pre-activations of the gate.

    Args:
        residual_channels: channels of ``h`` (input and residual output).
        skip_channels: channels of the skip output.
        kernel_size: taps of the dilated convolution (default ``2``).
        dilation: dilation of the convolution (default ``1``).

    References:
        van den Oord et al., "WaveNet: A Generative Model for Raw Audio", 2016.

    Example:
        >>> block = GatedResidualBlock(16, 32, kernel_size=2, dilation=4)
        >>> h, skip = block(torch.randn(2, 16, 50))
        >>> h.shape, skip.shape
        (torch.Size([2, 16, 50]), torch.Size([2, 32, 50]))
    """

    def __init__(
        self,
        residual_channels: int,
        skip_channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.residual_channels = residual_channels
        self.conv = CausalConv1d(residual_channels, 2 * residual_channels, kernel_size, dilation)
        # Residual and skip 1x1 convolutions fused into one matrix product.
        self.out = nn.Conv1d(residual_channels, residual_channels + skip_channels, 1)

    def forward(self, h: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Full path.

        Args:
            h: input, ``(batch, residual_channels, time)``.
            cond: conditioning added to the gate pre-activations, ``(batch,
                2 * residual_channels, time)`` or ``(batch, 2 * residual_channels, 1)``
                (constant over time), or ``None``.

        Returns:
            ``(residual, skip)``: ``(batch, residual_channels, time)`` and
            ``(batch, skip_channels, time)``.
        """
        a = self.conv(h)
        if cond is not None:
            a = a + cond
        rs = self.out(gated_activation(a, dim=1))
        r = self.residual_channels
        return h + rs[:, :r], rs[:, r:]

    def init_cache(
        self,
        batch: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> ConvQueue:
        """Empty queue of the block's convolution (see :meth:`CausalConv1d.init_cache`)."""
        return self.conv.init_cache(batch, device=device, dtype=dtype)

    def step(
        self, h_t: Tensor, cache: ConvQueue, cond_t: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Incremental path: one time step.

        Args:
            h_t: input of this step, ``(batch, residual_channels)``.
            cache: the block's queue, updated in place.
            cond_t: conditioning of this step, ``(batch, 2 * residual_channels)``, or ``None``.

        Returns:
            ``(residual, skip)`` of this step: ``(batch, residual_channels)`` and
            ``(batch, skip_channels)``.
        """
        a = self.conv.step(h_t, cache)
        if cond_t is not None:
            a = a + cond_t
        rs = F.linear(gated_activation(a, dim=1), self.out.weight.squeeze(-1), self.out.bias)
        r = self.residual_channels
        return h_t + rs[:, :r], rs[:, r:]
