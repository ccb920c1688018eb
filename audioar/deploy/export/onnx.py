"""The exported detector as an ONNX graph (``audioar export RUN --format onnx``).

The same computation as the TorchScript module (:class:`~audioar.deploy.export.detector.
ExportedDetector`), traced by ``torch.export`` and translated by ``torch.onnx.export``
(needs ``onnx`` and ``onnxscript``: the ``export`` extra). The graph's inputs are
``waveform`` ``(batch, time)`` float32 at the run's rate, ``lengths`` ``(batch,)`` int64 (no
optional inputs in ONNX: give every row's real length) and, for a run conditioned on groups,
``groups`` ``(batch,)`` int64 (``-1``: the clip's most likely group); its output ``scores``
``(batch,)`` float64. The sample rate, threshold and class names are the model's metadata
(``sample_rate``, ``threshold``, ``classes`` as JSON, ``score_method``, ``target``).

Every row is zero-padded past the run's window and frame sizes before featurizing, so the
traced graph takes one path for clips of any length (the lengths make the padding count for
nothing). With ``onnxruntime`` installed, the written graph is run on a few synthetic clips
and compared with the library's scores before the file is put in place.
"""

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioar.atomic import atomic_write
from audioar.deploy.export.densities import ExportError
from audioar.deploy.export.detector import ExportedDetector, build_detector
from audioar.pipeline.trained import TrainedModel

__all__ = ["write_onnx", "onnx_available", "run_onnx"]

logger = logging.getLogger(__name__)


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxscript`` (what ``torch.onnx.export`` needs) import."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _quiet_exporter():  # noqa: ANN202
    """The exporter's progress lines and notices are for developers: hidden while it runs."""
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _inputs(detector: ExportedDetector, clips: list[np.ndarray]) -> dict[str, Any]:
    from audioar.deploy.export.check import batch_of

    x, lengths = batch_of(clips)
    feed: dict[str, Any] = {"waveform": x, "lengths": lengths}
    if detector.by_group:
        feed["groups"] = torch.full((len(clips),), -1, dtype=torch.int64)
    return feed


def run_onnx(path: str | Path, feed: dict[str, Any]) -> np.ndarray:
    """Scores from the ONNX file ``path`` under onnxruntime (``feed``: name -> array)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = {
        k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in feed.items()
    }
    return session.run(None, arrays)[0]


def write_onnx(trained: TrainedModel, out: str | Path, *, check: bool = True) -> Path:
    """Write the run's detector as an ONNX file (whole or not at all).

    Args:
        trained: The run.
        out: The file to write.
        check: With onnxruntime installed, compare the graph's scores with the library's
            on synthetic clips (of lengths other than the traced ones) before writing.

    Raises:
        ExportError: ``onnx``/``onnxscript`` missing, a run or operator the exporter
            cannot take, or a graph whose scores differ from the library's.
    """
    from audioar.deploy.export.check import library_scores, probe_clips, scores_match

    if not onnx_available():
        raise ExportError(
            "export: --format onnx needs the onnx and onnxscript packages (pip install "
            "'audioar[export]'); --format torchscript needs nothing more"
        )
    detector = build_detector(trained, onnx=True).eval()
    rate = detector.sample_rate
    example = _inputs(detector, probe_clips(rate))
    batch, time = torch.export.Dim("batch", min=1), torch.export.Dim("time", min=1)
    dynamic: dict[str, Any] = {"waveform": {0: batch, 1: time}, "lengths": {0: batch}}
    if detector.by_group:
        dynamic["groups"] = {0: batch}
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                detector,
                tuple(example.values()),
                input_names=list(example),
                output_names=["scores"],
                dynamic_shapes=dynamic,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many kinds; one line names it
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"export: torch.onnx.export cannot export this run ({first})"
            ) from None
    metadata = {
        "sample_rate": str(rate),
        "threshold": repr(float(detector.threshold)),
        "classes": json.dumps(detector.classes),
        "target": detector.target,
        "score_method": detector.score_method,
        "by_group": str(detector.by_group).lower(),
    }
    program.model.metadata_props.update(metadata)

    def write(tmp: Path) -> None:
        with _quiet_exporter():
            program.save(str(tmp), external_data=False)
        if check and _runtime_available():
            clips = probe_clips(rate, (0.05, 0.8, 1.7), seed=1)
            got = run_onnx(tmp, _inputs(detector, clips))
            groups = [None] * len(clips) if detector.by_group else None
            want, scale = library_scores(trained, clips, groups, with_scale=True)
            if not scores_match(trained, got, want, scale):
                raise ExportError(
                    "export: the ONNX graph's scores differ from the library's; "
                    "use --format torchscript"
                )

    atomic_write(out, write)
    if check and not _runtime_available():
        logger.info("onnxruntime is not installed: %s was not run before writing", out)
    return Path(out)


def _runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
