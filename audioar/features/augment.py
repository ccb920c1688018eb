"""Random warps of training frames (sequence and image models): other speakers, tempos.

A held-out speaker differs from the training speakers mostly in vocal-tract length (formants
sit higher or lower: a stretch of the frequency axis) and in speaking rate (a stretch of the
time axis). Showing the model each training clip under a random small warp of both axes
every epoch teaches it that those differences are not what tells the digits apart.

* :func:`warp_bins` stretches the bin axis of log-mel frames by a factor ``alpha``
  piecewise linearly (VTLP: the low part scales by ``alpha``, the top is bent so the last
  bin stays the last bin);
* :func:`stretch_time` resamples the frame axis to ``round(alpha * time)`` frames;
* :class:`AugmentedSequences` wraps a dataset of ``(frames, label, length)`` items and draws
  fresh factors for every item it returns (torch's global RNG, so a seeded fit repeats).

Both warps interpolate linearly between neighbouring bins or frames; a factor of 1 returns
the frames unchanged.

References:
    Jaitly, Hinton, "Vocal Tract Length Perturbation (VTLP) improves speech recognition",
    ICML Workshop on Deep Learning for Audio, Speech and Language, 2013.
    Ko, Peddinti, Povey, Khudanpur, "Audio Augmentation for Speech Recognition",
    Interspeech 2015 (speed perturbation).
"""

import torch
from torch import Tensor
from torch.utils.data import Dataset

from audioar.errors import ConfigError
from audioar.features.stft import check_cmvn, clip_normalize
from audioar.features.timing import interpolate, resample_frames

__all__ = ["warp_bins", "stretch_time", "AugmentedSequences"]

#: Share of the bin axis (of the smaller of input and output) scaled exactly by ``alpha``.
_VTLP_KNEE = 0.85


def warp_bins(frames: Tensor, alpha: float) -> Tensor:
    """Warp the bin (frequency) axis of frames by ``alpha``, VTLP style.

    Output bin ``j`` reads input position ``j / alpha`` up to a knee, then a straight line
    to the last bin, so ``alpha > 1`` moves spectral features up (a shorter vocal tract),
    ``alpha < 1`` down, and the edges stay where they are.

    Args:
        frames: ``(time, bins)`` frames.
        alpha: Warp factor, > 0; 1 leaves the frames as they are.

    Returns:
        ``(time, bins)`` warped frames.
    """
    if alpha <= 0:
        raise ConfigError(f"warp factor must be positive, got {alpha}")
    bins = frames.shape[-1]
    if alpha == 1.0 or bins < 2:
        return frames
    top = float(bins - 1)
    knee = _VTLP_KNEE * top * min(1.0, alpha)  # output position of the knee
    j = torch.arange(bins, dtype=torch.float64)
    source = torch.where(
        j <= knee,
        j / alpha,
        knee / alpha + (j - knee) * (top - knee / alpha) / (top - knee),
    )
    return interpolate(frames, source, dim=-1)


def stretch_time(frames: Tensor, alpha: float) -> Tensor:
    """Resample the frame axis to ``max(1, round(alpha * time))`` frames.

    Args:
        frames: ``(time, bins)`` frames.
        alpha: Length factor, > 0: above 1 slower speech (more frames), below 1 faster.

    Returns:
        ``(round(alpha * time), bins)`` frames; the first and last frames are kept.
    """
    if alpha <= 0:
        raise ConfigError(f"stretch factor must be positive, got {alpha}")
    time = frames.shape[0]
    length = max(1, int(round(alpha * time)))
    return resample_frames(frames, length)


class AugmentedSequences(Dataset):
    """Training items ``(frames, label, length)`` under a fresh random warp at every access.

    Items are frames ``(time, bins)`` (sequence models) or spectrogram images ``(1, bins,
    width)`` whose first ``length`` columns are the clip (image models): an image is warped
    on its valid columns and padded or trimmed back to ``width``.

    Each access draws ``a ~ U(1 - warp, 1 + warp)`` for :func:`warp_bins` and
    ``s ~ U(1 - stretch, 1 + stretch)`` for :func:`stretch_time` from torch's global RNG,
    then renormalises the clip with ``cmvn`` (so a normalised clip stays normalised).

    Args:
        base: Dataset of ``(frames (time, bins) or image (1, bins, width), label, length)``
            items (e.g. :class:`audioar.pipeline.batches.ClipSet`).
        warp: Largest relative frequency warp, in ``[0, 1)``. Default 0.1.
        stretch: Largest relative tempo change, in ``[0, 1)``. Default 0.1.
        cmvn: The frames' per-clip normalisation (``none`` | ``mean`` | ``meanvar``),
            applied again after the warps. Default ``"none"``.

    Example:
        >>> items = [(torch.randn(20, 8), torch.tensor(0), torch.tensor(20))]
        >>> x, label, length = AugmentedSequences(items, warp=0.1, stretch=0.2)[0]
        >>> x.shape[1], int(length) == len(x)
        (8, True)
    """

    def __init__(
        self, base: Dataset, warp: float = 0.1, stretch: float = 0.1, cmvn: str = "none"
    ) -> None:
        for name, value in (("warp", warp), ("stretch", stretch)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"augmentation {name} must be in [0, 1), got {value!r}")
        check_cmvn(cmvn)
        self.base = base
        self.warp = float(warp)
        self.stretch = float(stretch)
        self.cmvn = cmvn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def _factor(self, spread: float) -> float:
        if spread == 0.0:
            return 1.0
        return 1.0 + spread * (2.0 * torch.rand(()).item() - 1.0)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        item, label, length = self.base[index]
        image = item.dim() == 3  # (1, bins, width), the valid columns first
        frames = item[0, :, : int(length)].t() if image else item
        dtype = frames.dtype
        x = warp_bins(frames.double(), self._factor(self.warp))
        x = stretch_time(x, self._factor(self.stretch))
        x = clip_normalize(x.unsqueeze(0), self.cmvn)[0].to(dtype)
        if not image:
            return x, label, torch.tensor(len(x))
        width = item.shape[-1]
        x = x[:width]
        out = item.new_zeros(item.shape)
        out[0, :, : len(x)] = x.t()
        return out, label, torch.tensor(len(x))
