"""Fused incremental WaveNet step for fast generation (same numbers as the layer-by-layer path).

The reference incremental path (:meth:`GatedResidualBlock.step` per layer) costs about
seventeen small tensor operations per layer, and at batch 1 the time goes into per-op
overhead, not arithmetic. This stepper does the same computation in six preallocated,
in-place operations per layer (``kernel_size == 2``, no local features):

* The queue of a layer holds *projected* past inputs: when step ``s`` runs, the
  contribution of ``h[s]`` to the gate of step ``s + (kernel_size - 1) * dilation`` (tap 0)
  is written into a ring-buffer slot that already holds the convolution bias and the class
  embedding; taps in between are accumulated into their slots (Paine et al.'s queues, one
  matrix product earlier). A step then adds its current tap in place (one ``addmm_``) and
  the slot is its gate input; afterwards the slot starts over for a later step.
* Gate outputs of all layers go into one buffer ``(batch, layers, residual + 1)`` whose last
  column is 1, so residual updates carry their bias in the same ``addmm``, and all skip
  connections plus their biases are one matrix product at the end.

Build one per generated batch, under ``torch.no_grad()``; it snapshots the weights, so make
a new one after training further. ``WaveNet.output_params(..., path="fast")`` runs it over a
given sequence, and the tests check it against the full convolutional path.

References:
    Paine et al., "Fast Wavenet Generation Algorithm", 2016.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["WaveNetStepper", "step_threads"]

# Per-step matrices are tiny: below this many batch x residual values, extra threads only add
# synchronisation (measured on 2 shared cores, default model: batch 10 at 2 threads took
# 27-36 ms a step against 1.4-1.6 ms at 1 thread).
_SINGLE_THREAD_BELOW = 2**14


@contextmanager
def step_threads(batch: int, residual_channels: int) -> Iterator[None]:
    """Runs incremental steps on one intra-op thread when the per-step work is small.

    Restores the previous ``torch.get_num_threads()`` afterwards.

    Args:
        batch: sequences stepped together.
        residual_channels: width of the residual stream.
    """
    previous = torch.get_num_threads()
    if batch * residual_channels < _SINGLE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class WaveNetStepper:
    """Incremental state and fused step of a :class:`~audioar.models.wavenet.WaveNet`.

    Args:
        model: the WaveNet (weights are copied, detached).
        batch: sequences stepped together.
        glob: class conditioning ``(batch, layers, 2 * residual_channels)`` or ``None``.

    Example:
        >>> from audioar.models import WaveNet
        >>> wn = WaveNet(classes=0, residual_channels=8, skip_channels=8, max_dilation=4)
        >>> with torch.no_grad():
        ...     stepper = WaveNetStepper(wn, batch=2, glob=None)
        ...     params = stepper.step(torch.zeros(2, 8))  # embedded input of step 0
        >>> params.shape
        torch.Size([2, 256])
    """

    def __init__(self, model: torch.nn.Module, batch: int, glob: Tensor | None) -> None:
        cfg = model.config
        r, k = cfg.residual_channels, cfg.kernel_size
        weight = model.head[-1].weight
        dev, dt = weight.device, weight.dtype
        layers = len(model.blocks)
        self.t = 0
        self.h = torch.zeros(batch, r, device=dev, dtype=dt)
        z = torch.zeros(batch, layers, r + 1, device=dev, dtype=dt)
        z[:, :, r] = 1.0  # the bias column
        self.z_all = z.view(batch, -1)
        self.layers = []
        skip_rows = []
        for i, block in enumerate(model.blocks):
            w = block.conv.weight.detach()  # (2r, r, k)
            taps = [w[:, :, j].t().contiguous() for j in range(k)]  # tap j: (r, 2r)
            const = block.conv.bias.detach().expand(batch, -1)
            if glob is not None:
                const = const + glob[:, i]
            const = const.contiguous()
            cap = block.conv.context
            acc = const.unsqueeze(0).repeat(cap, 1, 1)  # zero padding contributes nothing
            a = torch.empty(batch, 2 * r, device=dev, dtype=dt)
            out_w = block.out.weight.detach()[:, :, 0]  # (r + skip, r)
            out_b = block.out.bias.detach()
            res = torch.cat([out_w[:r].t(), out_b[:r].unsqueeze(0)]).contiguous()
            skip_rows.append(torch.cat([out_w[r:].t(), out_b[r:].unsqueeze(0)]))
            self.layers.append(
                (
                    taps,
                    const,
                    cap,
                    block.conv.dilation[0],
                    [(v, v[:, :r], v[:, r:]) for v in acc],  # slot views and halves, made once
                    a,
                    a[:, :r],
                    a[:, r:],
                    torch.empty(batch, r, device=dev, dtype=dt),
                    torch.empty(batch, r, device=dev, dtype=dt),
                    z[:, i, :r],
                    z[:, i, :],
                    res,
                )
            )
        self.skip_w = torch.cat(skip_rows).contiguous()  # (layers * (r + 1), skip)
        self.w1 = model.head[1].weight.detach()[:, :, 0].t().contiguous()
        self.b1 = model.head[1].bias.detach()
        self.w2 = model.head[3].weight.detach()[:, :, 0].t().contiguous()
        self.b2 = model.head[3].bias.detach()
        self.local_w = None
        if model.local_proj is not None:
            self.local_w = model.local_proj.weight.detach()[:, :, 0].t().contiguous()
            self.local_b = model.local_proj.bias.detach()
            self.local = torch.empty(batch, layers * 2 * r, device=dev, dtype=dt)
            self.local_views = [self.local[:, i * 2 * r : (i + 1) * 2 * r] for i in range(layers)]

    def step(self, h_t: Tensor, local_t: Tensor | None = None) -> Tensor:
        """Advances one step.

        Args:
            h_t: embedded input of this step, ``(batch, residual_channels)``.
            local_t: upsampled local features of this step, ``(batch, local_channels)``,
                when the model has local conditioning.

        Returns:
            Output parameters of this step, ``(batch, size)``.
        """
        h, t = self.h, self.t
        h.copy_(h_t)
        if local_t is not None:
            torch.addmm(self.local_b, local_t, self.local_w, out=self.local)
        last = len(self.layers) - 1
        for i, (taps, const, cap, d, slots, a, a1, a2, th, sg, z, z_aug, res) in enumerate(
            self.layers
        ):
            if cap == 0:
                torch.addmm(const, h, taps[-1], out=a)
            else:
                # The slot of step t already holds bias, class and every past tap: add the
                # current tap in place and use it as the gate input.
                a, a1, a2 = slots[t % cap]
                a.addmm_(h, taps[-1])
                for m in range(1, len(taps) - 1):  # middle taps (kernel_size > 2)
                    slots[(t + m * d) % cap][0].addmm_(h, taps[-1 - m])
            if local_t is not None:
                a.add_(self.local_views[i])
            torch.tanh(a1, out=th)
            torch.sigmoid(a2, out=sg)
            torch.mul(th, sg, out=z)
            if cap != 0:  # the slot now starts over for step t + cap, with tap 0 of h[t]
                torch.addmm(const, h, taps[0], out=a)
            if i != last:  # the last residual output is never used
                h.addmm_(z_aug, res)
        self.t = t + 1
        hidden = torch.mm(self.z_all, self.skip_w).relu_()
        hidden = torch.addmm(self.b1, hidden, self.w1).relu_()
        return torch.addmm(self.b2, hidden, self.w2)
