"""Export a trained run as one self-contained file: ``audioar export RUN --out detector.pt``.

The TorchScript file holds the whole detector (:class:`~audioar.export.detector.
ExportedDetector`): featurizer, density model with its standardisation, score method,
window aggregation and calibrated threshold. It loads with ``torch.jit.load`` in a process
that never imports audioar::

    import torch
    detector = torch.jit.load("detector.pt")
    scores = detector(waveforms, lengths)        # (batch,) float64, higher = more unusual
    flags = detector.is_anomaly(waveforms, lengths)
    detector.sample_rate, detector.threshold

``--format onnx`` writes the same computation as an ONNX graph (:mod:`audioar.export.onnx`,
needs the ``export`` extra: ``onnx``, ``onnxscript``; ``onnxruntime`` to check it).

Before a file is written the module is checked against the library's own scoring
(:func:`audioar.scoring.score_features`) on a few synthetic clips; the file appears whole
or not at all (:mod:`audioar.atomic`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from audioar.atomic import atomic_write
from audioar.clip_windows import is_windowed
from audioar.export.densities import SUPPORTED_MODELS, ExportError
from audioar.export.detector import (
    SUPPORTED_FEATURES,
    SUPPORTED_SCORES,
    ExportedDetector,
    build_detector,
)
from audioar.run import TrainedModel

__all__ = [
    "FORMATS",
    "SUPPORTED_FEATURES",
    "SUPPORTED_MODELS",
    "SUPPORTED_SCORES",
    "ExportError",
    "ExportedDetector",
    "export_run",
    "export_trained",
    "script_detector",
    "library_scores",
    "probe_clips",
    "scores_match",
    "batch_of",
]

logger = logging.getLogger(__name__)

#: Formats :func:`export_trained` writes.
FORMATS = ("torchscript", "onnx")
#: How close the exported scores must be to the library's (relative, and absolute for
#: scores near 0 such as a confident class posterior).
RTOL, ATOL = 1e-3, 1e-6


@contextmanager
def quiet_jit() -> Iterator[None]:
    """TorchScript's deprecation notices are for developers: not shown while exporting."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated")
        yield


def script_detector(trained: TrainedModel) -> torch.jit.ScriptModule:
    """The run as a TorchScript module (not written anywhere).

    Raises:
        ExportError: A run that cannot be exported (one line naming why), or a featurizer
            TorchScript does not compile.
    """
    detector = build_detector(trained).eval()
    with quiet_jit():
        try:
            return torch.jit.script(detector)
        except (RuntimeError, torch.jit.frontend.FrontendError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"export: TorchScript cannot compile this run ({first})") from None


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
    from audioar.scoring import score_features

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


def _check(trained: TrainedModel, module: torch.nn.Module) -> None:
    """Refuse a module whose scores of :func:`probe_clips` differ from the library's."""
    clips = probe_clips(trained.featurizer.sample_rate)
    groups = [None] * len(clips) if trained.by_group else None
    want, scale = library_scores(trained, clips, groups, with_scale=True)
    with torch.no_grad():
        got = module(*batch_of(clips)).numpy()
    if not scores_match(trained, got, want, scale):
        worst = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), ATOL)))
        raise ExportError(
            f"export: the exported module's scores differ from the library's (relative "
            f"difference {worst:.3g} > {RTOL}); please report this run"
        )


def export_trained(
    trained: TrainedModel, out: str | Path, *, format: str = "torchscript", check: bool = True
) -> Path:
    """Write a trained run as one file (whole or not at all).

    Args:
        trained: The run (:func:`audioar.pipeline.load_trained`).
        out: The file to write (e.g. ``detector.pt`` or ``detector.onnx``).
        format: ``"torchscript"`` (default) or ``"onnx"``.
        check: Compare the module's scores with the library's on synthetic clips before
            writing (default True).

    Returns:
        ``out`` as a Path.

    Raises:
        ExportError: An unknown format, a run that cannot be exported (one line naming
            why and what is supported), or a module that does not reproduce the library.
    """
    if format not in FORMATS:
        raise ExportError(f"export: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if format == "onnx":
        from audioar.export.onnx import write_onnx

        return write_onnx(trained, out, check=check)
    scripted = script_detector(trained)
    if check:
        _check(trained, scripted)
    with quiet_jit():
        atomic_write(out, lambda tmp: torch.jit.save(scripted, str(tmp)))
    logger.info("exported %s (%d bytes)", out, out.stat().st_size)
    return out


def export_run(
    run_dir: str | Path, out: str | Path, *, format: str = "torchscript", check: bool = True
) -> Path:
    """Export the run directory ``run_dir`` (see :func:`export_trained`).

    Raises:
        RunFormatError: Not a run directory.
        ExportError: See :func:`export_trained`.
    """
    from audioar.pipeline import load_trained

    return export_trained(load_trained(run_dir), out, format=format, check=check)
