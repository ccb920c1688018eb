"""A class-conditional sequence density (WaveNet) that reports densities of the raw features.

μ-law codes go to the WaveNet as they are. Real-valued frames (e.g. log-mel frames) are
standardised per bin with training statistics first, ``z = (x - mean) / std``; the change of
variables adds ``-sum(log std)`` for every *valid* frame, so log-likelihoods stay in the
units of the raw features (as :class:`~audioar.models.standardize.Standardized` does for
one vector per clip) and padded frames never count.
"""

import torch
from torch import Tensor, nn

from audioar.models.wavenet import WaveNet, length_mask

__all__ = ["SequenceDensity"]


class SequenceDensity(nn.Module):
    """Wrap a :class:`WaveNet`; frames are standardised, codes passed through.

    Args:
        model: The WaveNet (``output="categorical"`` for codes, ``"gaussian"`` or
            ``"logistic_mixture"`` for frames).
        mean: ``(in_features,)`` training mean of the frames; ignored (and may be None) for
            codes. Default None: zeros.
        std: ``(in_features,)`` training standard deviation, clamped to at least
            ``min_std``. Default None: ones.
        min_std: Floor under ``std`` so constant bins do not blow up. Default 1e-3.

    Shapes:
        ``x``: codes ``(batch, time)`` (LongTensor) or frames ``(batch, time, in_features)``;
        ``labels``: ``(batch,)``; ``lengths``: ``(batch,)`` valid steps (None: all valid).

    Example:
        >>> wn = WaveNet(classes=3, residual_channels=8, skip_channels=8, max_dilation=4,
        ...              output="gaussian", in_features=5)
        >>> density = SequenceDensity(wn, torch.zeros(5), torch.ones(5) * 2)
        >>> density.log_prob(torch.randn(2, 7, 5), torch.tensor([0, 2])).shape
        torch.Size([2])
    """

    def __init__(
        self,
        model: WaveNet,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        min_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.model = model
        self.frames = model.output != "categorical"
        features = model.in_features if self.frames else 1
        mean = torch.zeros(features) if mean is None or not self.frames else mean
        std = torch.ones(features) if std is None or not self.frames else std
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float().clamp_min(min_std))

    @property
    def classes(self) -> int:
        """Number of classes the WaveNet is conditioned on."""
        return self.model.classes

    def _standardize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std if self.frames else x

    def _log_det(self) -> Tensor:
        """``-sum(log std)``: log |dz/dx| of one frame (0 for codes)."""
        return -torch.log(self.std).sum() if self.frames else self.std.new_zeros(())

    def _steps(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Valid steps per sequence ``(batch,)`` as float."""
        if lengths is None:
            return torch.full((x.shape[0],), float(x.shape[1]), device=x.device)
        return torch.as_tensor(lengths, device=x.device).float()

    def log_prob_steps(self, x: Tensor, labels: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Per-step log-likelihoods ``(batch, time)`` of the raw features, nats.

        Padded steps (at or beyond ``lengths``) are exactly 0.
        """
        steps = self.model.log_prob_steps(self._standardize(x), labels, lengths)
        if not self.frames:
            return steps
        valid = (
            length_mask(torch.as_tensor(lengths, device=x.device), x.shape[1])
            if lengths is not None
            else torch.ones_like(steps, dtype=torch.bool)
        )
        return torch.where(valid, steps + self._log_det(), torch.zeros_like(steps))

    def log_prob(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        lengths: Tensor | None = None,
        *,
        context: Tensor | None = None,
    ) -> Tensor:
        """Clip log-likelihoods ``(batch,)``: ``log p(x | labels)`` summed over valid steps.

        Can be called as ``log_prob(*batch)`` with ``batch = (x, labels, lengths)``;
        ``context`` is another name for ``labels``.
        """
        labels = context if labels is None else labels
        ll = self.model.log_prob(self._standardize(x), labels, lengths)
        return ll + self._steps(x, lengths) * self._log_det()

    def log_prob_all_classes(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(batch, classes)``: ``log p(x | c)`` for every class in one batched pass."""
        ll = self.model.log_prob_all_classes(self._standardize(x), lengths)
        return ll + (self._steps(x, lengths) * self._log_det()).unsqueeze(1)

    @torch.no_grad()
    def generate(self, labels: Tensor, length: int, temperature: float = 1.0) -> Tensor:
        """Sample ``length`` steps per label with the cached (incremental) path.

        Returns:
            Codes ``(batch, length)`` or raw-unit frames ``(batch, length, in_features)``.
        """
        out = self.model.generate(labels, length, temperature)
        return out * self.std + self.mean if self.frames else out
