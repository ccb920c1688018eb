"""The check an export passes before it is written: synthetic probe clips, the library's
scores of them, and whether an exported module's scores match (TorchScript and ONNX)."""

from __future__ import annotations

import numpy as np
import torch

from audioar.pipeline.trained import TrainedModel
from audioar.pipeline.windows import is_windowed

__all__ = ["ATOL", "RTOL", "probe_clips", "library_scores", "batch_of", "scores_match"]

#: How close the exported scores must be to the library's (relative, and absolute for
#: scores near 0 such as a confident class posterior).
RTOL = 1e-3  # relative tolerance of the check
ATOL = 1e-6  # absolute floor of the relative difference


def probe_clips(
    sample_rate: int, seconds: tuple[float, ...] = (0.35, 1.3, 2.1), seed: int = 0
) -> list[np.ndarray]:
    """Synthetic clips of different lengths (noisy chirps) to check an export with."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, length in enumerate(seconds):
        t = np.arange(int(length * sample_rate)) / sample_rate
        tone = np.sin(2 * np.pi * (200 + 150 * i) * t * (1 + 0.5 * t))
        clips.append((0.3 * tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return clips


def library_scores(
    trained: TrainedModel,
    clips: list[np.ndarray],
    groups: list[str | None] | None = None,
    *,
    with_scale: bool = False,
) -> np.ndarray | tuple[np.ndarray, float]:
    """The library's anomaly scores of waveforms (the reference an export must match).

    Args:
        trained: The run.
        clips: 1-D float32 waveforms at the run's rate.
        groups: Each clip's group for a run conditioned on groups (None: unknown).
        with_scale: Also return the largest ``|log p(x | class)|`` of the clips (the scale
            of a score that is a difference of log-likelihoods, see :func:`scores_match`).
    """
    from audioar.features import featurize_waveforms
    from audioar.pipeline.scoring import score_features

    if is_windowed(trained.featurizer):
        features = [trained.featurizer(torch.from_numpy(c)) for c in clips]
    else:
        features = featurize_waveforms(trained.featurizer, clips)
    with torch.no_grad():
        scores = score_features(trained, features, groups)
    anomaly = -scores.score(trained.score)
    if with_scale:
        return anomaly, float(np.max(np.abs(scores.log_likelihood), initial=0.0))
    return anomaly


def batch_of(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips zero-padded into ``(batch, time)`` and their ``(batch,)`` lengths."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
    x = torch.zeros(len(clips), int(lengths.max()))
    for row, clip in enumerate(clips):
        x[row, : len(clip)] = torch.from_numpy(clip)
    return x, lengths


def scores_match(
    trained: TrainedModel, got: np.ndarray, want: np.ndarray, scale: float = 0.0
) -> bool:
    """Whether exported scores ``got`` equal the library's ``want`` to :data:`RTOL`.

    Near 0 an absolute :data:`ATOL` also counts. A likelihood ratio or a typicality is a
    difference of log-likelihoods of size ``scale`` (the training mean, for typicality),
    each a float32 sum: there :data:`RTOL` / 100 of that size counts too, the float32
    rounding the library's own fast and reference paths differ by.
    """
    atol = ATOL
    if trained.score in ("likelihood_ratio", "typicality"):
        size = max(scale, abs(trained.typical or 0.0) if trained.score == "typicality" else 0)
        atol = max(atol, RTOL / 100 * size)
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=RTOL, atol=atol))
