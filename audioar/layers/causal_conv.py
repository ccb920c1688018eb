"""Dilated causal 1-D convolution with an incremental (one step at a time) path.

The full path left-pads the input by ``(kernel_size - 1) * dilation`` zeros, so output ``t``
sees inputs ``<= t`` only. The incremental path keeps, per layer, a queue of the last
``(kernel_size - 1) * dilation`` inputs (Fast WaveNet): one new output then costs one small
matrix product instead of a convolution over the whole receptive field.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CausalConv1d", "ConvQueue"]


@dataclass
class ConvQueue:
    """Ring buffer of one :class:`CausalConv1d`'s past inputs, for incremental steps.

    Slot ``s % capacity`` of ``buffer`` holds the input of step ``s``; a slot not yet
    written holds zeros, which is exactly the left padding of the full path.

    Attributes:
        buffer: past inputs, ``(capacity, batch, in_channels)`` with
            ``capacity = (kernel_size - 1) * dilation`` (zero rows when ``kernel_size == 1``).
        weight: the convolution weight flattened for one step, ``(out_channels,
            kernel_size * in_channels)``, taken when the queue was made: make a new queue
            (or call :meth:`CausalConv1d.init_cache` again) after changing the weights.
        position: number of steps taken so far.
    """

    buffer: Tensor
    weight: Tensor
    position: int = 0

    def reset(self) -> None:
        """Forgets every past input (zeros) and starts again at step 0."""
        self.buffer.zero_()
        self.position = 0


class CausalConv1d(nn.Conv1d):
    """Dilated causal convolution over ``(batch, in_channels, time)``.

    A :class:`torch.nn.Conv1d` whose input is padded on the left only, so that
    ``y[..., t]`` depends on ``x[..., t - (kernel_size - 1) * dilation : t + 1]`` and on
    nothing later. :meth:`step` computes the same numbers one time step at a time.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: taps of the filter (default ``2``).
        dilation: spacing between taps, in steps (default ``1``).
        bias: whether to add a learned bias (default ``True``).

    References:
        van den Oord et al., "WaveNet: A Generative Model for Raw Audio", 2016.
        Paine et al., "Fast Wavenet Generation Algorithm", 2016.

    Example:
        >>> conv = CausalConv1d(4, 8, kernel_size=2, dilation=4)
        >>> x = torch.randn(3, 4, 20)
        >>> conv(x).shape
        torch.Size([3, 8, 20])
        >>> queue = conv.init_cache(batch=3)
        >>> y0 = conv.step(x[:, :, 0], queue)  # equals conv(x)[:, :, 0]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        # Number of past inputs one output needs: the left padding and the queue length.
        self.context = (kernel_size - 1) * dilation

    def forward(self, x: Tensor) -> Tensor:
        """Full (parallel) path.

        Args:
            x: input, ``(batch, in_channels, time)``.

        Returns:
            Output ``(batch, out_channels, time)``; step ``t`` depends on inputs ``<= t`` only.
        """
        return super().forward(F.pad(x, (self.context, 0)))

    def init_cache(
        self,
        batch: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> ConvQueue:
        """Makes an empty queue for :meth:`step` (as if every past input were zero).

        Args:
            batch: number of sequences stepped together.
            device: device of the buffer (default: the weight's).
            dtype: dtype of the buffer (default: the weight's).

        Returns:
            A :class:`ConvQueue` at position 0.
        """
        device = self.weight.device if device is None else device
        dtype = self.weight.dtype if dtype is None else dtype
        buffer = torch.zeros(self.context, batch, self.in_channels, device=device, dtype=dtype)
        # (out, in, k) -> (out, k * in): tap-major, oldest tap first, as the inputs are joined.
        weight = self.weight.detach().permute(0, 2, 1).reshape(self.out_channels, -1)
        return ConvQueue(buffer=buffer, weight=weight.to(device=device, dtype=dtype))

    def step(self, x_t: Tensor, cache: ConvQueue) -> Tensor:
        """Incremental path: the output for the next time step.

        Args:
            x_t: input of this step, ``(batch, in_channels)``.
            cache: the queue of this layer; read, then updated in place with ``x_t``.

        Returns:
            Output of this step, ``(batch, out_channels)``, equal to the matching column
            of :meth:`forward` over the whole sequence.
        """
        if self.context == 0:
            cache.position += 1
            return F.linear(x_t, cache.weight, self.bias)
        t, d, size = cache.position, self.dilation[0], self.context
        # Tap j (oldest first) reads the input of step t - (kernel_size - 1 - j) * dilation.
        taps = [cache.buffer[(t - m * d) % size] for m in range(self.kernel_size[0] - 1, 0, -1)]
        y = F.linear(torch.cat([*taps, x_t], dim=1), cache.weight, self.bias)
        cache.buffer[t % size] = x_t  # after reading: this slot held the oldest tap
        cache.position = t + 1
        return y
