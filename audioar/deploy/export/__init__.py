"""Export a trained run as one self-contained file: ``audioar export RUN --out detector.pt``.

The TorchScript file holds the whole detector (:class:`~audioar.deploy.export.detector.
ExportedDetector`): featurizer, density model with its standardisation, score method,
window aggregation and calibrated threshold. It loads with ``torch.jit.load`` in a process
that never imports audioar::

    import torch
    detector = torch.jit.load("detector.pt")
    scores = detector(waveforms, lengths)        # (batch,) float64, higher = more unusual
    flags = detector.is_anomaly(waveforms, lengths)
    detector.sample_rate, detector.threshold

``--format onnx`` writes the same computation as an ONNX graph (:mod:`audioar.deploy.export.onnx`,
needs the ``export`` extra: ``onnx``, ``onnxscript``; ``onnxruntime`` to check it).

Before a file is written the module is checked against the library's own scoring
(:func:`audioar.pipeline.scoring.score_features`) on a few synthetic clips; the file appears whole
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
from audioar.deploy.export.check import (
    ATOL,
    RTOL,
    batch_of,
    library_scores,
    probe_clips,
    scores_match,
)
from audioar.deploy.export.densities import SUPPORTED_MODELS, ExportError
from audioar.deploy.export.detector import (
    SUPPORTED_FEATURES,
    SUPPORTED_SCORES,
    ExportedDetector,
    build_detector,
)
from audioar.pipeline.trained import TrainedModel

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
        trained: The run (:func:`audioar.pipeline.runs.load_trained`).
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
        from audioar.deploy.export.onnx import write_onnx

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
    from audioar.pipeline.runs import load_trained

    return export_trained(load_trained(run_dir), out, format=format, check=check)
