"""Perturbed clips: a share of each clip's values replaced by noise, drawn afresh each time.

The likelihood ratio of Ren et al. (2019) divides a model's likelihood by that of a
*background* model trained on perturbed inputs: the perturbation destroys the structure
that makes a clip a clip of its class, so the background model learns only what all audio
of this recording setup shares (level, channel colouring, noise floor), and the ratio
cancels it. Real-valued features get Gaussian noise with the training mean and standard
deviation of each feature; codes get uniform random codes.

References:
    Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon, Lakshminarayanan, "Likelihood Ratios
    for Out-of-Distribution Detection", NeurIPS 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from audioar.errors import ConfigError

__all__ = ["perturb", "Perturbed"]


def perturb(x: Tensor, rate: float, mean: Tensor, std: Tensor, levels: int = 0) -> Tensor:
    """``x`` with each value replaced, with probability ``rate``, by noise (torch's RNG).

    Args:
        x: One clip: ``(features,)``, codes ``(time,)``, frames ``(time, bins)`` or an image
            ``(channels, height, width)``.
        rate: Share of values replaced, in ``(0, 1]``.
        mean: Training mean per feature, broadcastable to ``x`` (ignored for codes).
        std: Training standard deviation per feature, likewise.
        levels: Code values for discrete ``x`` (uniform random codes); 0: real-valued.

    Returns:
        A new tensor shaped like ``x``.
    """
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"perturbation rate must be in (0, 1], got {rate!r}")
    hit = torch.rand(x.shape) < rate
    if levels:
        noise = torch.randint(0, levels, x.shape, dtype=x.dtype)
    else:
        noise = (torch.randn(x.shape) * std + mean).to(x.dtype)
    return torch.where(hit, noise, x)


class Perturbed(Dataset):
    """Items ``(x, label, length)`` of ``base`` with ``x`` perturbed afresh at every access.

    Args:
        base: Dataset of ``(x, label, length)`` items (e.g.
            :class:`audioar.pipeline.batches.ClipSet`).
        rate: Share of values replaced.
        mean: Training mean per feature (shaped as the model's standardisation).
        std: Training standard deviation per feature.
        levels: Code values for discrete features; 0: real-valued.
        label: Replaces every item's label (e.g. the index of an "other" class); None keeps.
    """

    def __init__(
        self,
        base: Dataset,
        rate: float,
        mean: Tensor,
        std: Tensor,
        levels: int = 0,
        label: int | None = None,
    ) -> None:
        self.base = base
        self.rate = float(rate)
        self.mean, self.std, self.levels = mean, std, levels
        self.label = label

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        x, label, length = self.base[index]
        mean, std = self.mean, self.std
        if x.dim() == 2 and mean.dim() == 1:  # frames (time, bins): per-bin statistics
            mean, std = mean.unsqueeze(0), std.unsqueeze(0)
        out = perturb(x, self.rate, mean, std, self.levels)
        return out, label if self.label is None else torch.tensor(self.label), length
