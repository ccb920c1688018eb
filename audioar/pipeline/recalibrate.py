"""Set a saved run's threshold anew from normal clips recorded where it will be used.

``fit`` calibrates on its validation clips, which come from the training recordings. Clips
recorded elsewhere (another microphone, room, session or speaker) score differently, and a
threshold for "5 % of normal clips" there is only right when it is set on clips from there.
:func:`recalibrate` scores a folder of such normal clips with the run, calibrates on their
anomaly scores (:func:`audioar.pipeline.calibration.calibrate`, the same methods) and stores the new
calibration in the run (``config.json``; what it came from in ``extra.calibration_source``).
Clips that cannot be read are skipped and reported; the others still count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from audioar.config.recipes import CalibrationConfig
from audioar.errors import DataError
from audioar.pipeline.artifact import replace_calibration
from audioar.pipeline.calibration import MIN_REFERENCE, Calibration, calibrate
from audioar.pipeline.runs import load_trained
from audioar.pipeline.score_files import expand_inputs, score_files
from audioar.pipeline.trained import TrainedModel

__all__ = ["Recalibration", "recalibrate", "calibrate_trained"]


@dataclass(frozen=True)
class Recalibration:
    """What :func:`recalibrate` changed.

    Attributes:
        before: The run's calibration until now.
        after: The new one, now stored in the run.
        scored: How many clips it was set from.
        skipped: ``(path, reason)`` of each clip that could not be scored.
    """

    before: Calibration
    after: Calibration
    scored: int
    skipped: list[tuple[str, str]]


def recalibrate(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    target_fpr: float | None = None,
    method: str | None = None,
    batch_size: int = 2048,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Recalibration:
    """Calibrate ``run_dir`` anew on the normal clips named by ``inputs`` and store it.

    Args:
        run_dir: A run directory from ``fit``.
        inputs: Audio files, folders or CSV manifests of *normal* clips the model was not
            trained on (:func:`audioar.pipeline.score_files.expand_inputs`).
        target_fpr: Share of normal clips to flag. Default None: the run's.
        method: ``"empirical"`` or ``"gamma"``. Default None: the run's.
        batch_size: Files scored per batch. Default 2048.
        use_cache: Use the on-disk feature cache.
        progress: Called with the number of files finished after each batch.

    Returns:
        The :class:`Recalibration`.

    Raises:
        DataError: Fewer than ``MIN_REFERENCE`` clips could be scored, or an input names
            nothing.
        ConfigError: ``target_fpr`` outside ``(0, 1)`` or an unknown method (before
            anything is scored).
        RunFormatError: ``run_dir`` is not a run directory.
    """
    trained = load_trained(run_dir)
    before = trained.calibration
    after, scored, skipped = calibrate_trained(
        trained,
        inputs,
        target_fpr=target_fpr,
        method=method,
        batch_size=batch_size,
        use_cache=use_cache,
        progress=progress,
    )
    source = {
        "inputs": [str(Path(item).expanduser().absolute()) for item in inputs],
        "clips": scored,
        "skipped": len(skipped),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    replace_calibration(run_dir, after.to_dict(), source)
    return Recalibration(before, after, scored, skipped)


def calibrate_trained(
    trained: TrainedModel,
    inputs: Sequence[str | Path],
    *,
    target_fpr: float | None = None,
    method: str | None = None,
    batch_size: int = 2048,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> tuple[Calibration, int, list[tuple[str, str]]]:
    """The calibration a fitted model gets from the normal clips named by ``inputs`` (what
    :func:`recalibrate` stores; nothing is written here).

    Returns:
        ``(calibration, clips it was set from, [(path, reason) of each skipped clip])``.

    Raises:
        DataError: Fewer than ``MIN_REFERENCE`` clips could be scored.
        ConfigError: ``target_fpr`` outside ``(0, 1)`` or an unknown method.
    """
    before = trained.calibration
    target_fpr = before.target_fpr if target_fpr is None else target_fpr
    method = before.method if method is None else method
    CalibrationConfig(target_fpr=target_fpr, method=method)  # bad settings fail here
    files = expand_inputs(inputs)
    tables = score_files(
        trained, files, batch_size=batch_size, use_cache=use_cache, progress=progress
    )
    table = pd.concat(list(tables), ignore_index=True)
    failed = table["error"].astype(bool)
    bad = table[failed]
    skipped = [(str(p), str(e)) for p, e in zip(bad["path"], bad["error"], strict=True)]
    scores = table["anomaly_score"][~failed].to_numpy(dtype=float)
    if len(scores) < MIN_REFERENCE:
        raise DataError(
            f"calibration needs at least {MIN_REFERENCE} normal clips; {len(scores)} of "
            f"{len(files)} could be scored"
        )
    return calibrate(scores, target_fpr, method), len(scores), skipped
