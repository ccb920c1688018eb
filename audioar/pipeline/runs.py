"""The anomaly pipeline: data -> features -> density model -> calibrated run directory.

Everything the ``fit`` command does is :func:`fit_run`: the fit of
:func:`audioar.pipeline.fit.train_model` saved as a run directory (it appears whole or not at
all); :func:`load_trained` brings a run directory back for scoring.

A fit holds ``RUN_DIR.lock`` and keeps its checkpoint in ``RUN_DIR.partial/`` with the
settings it was made with (``settings.json``: the resolved config and the clips of each
part of the split); a resume with other settings, or over nothing, is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from audioar import __version__
from audioar.atomic import atomic_write, remove_stale_temporaries
from audioar.config.recipes import RunConfig, run_config_from_dict, run_config_to_dict
from audioar.data.discovery import Dataset, Split, split
from audioar.errors import ConfigError, DataError, RunFormatError, TrainingError
from audioar.features import featurizer_from_config
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.pipeline import distributed
from audioar.pipeline.artifact import (
    checkpoint_path_for,
    hold_run_lock,
    load_run,
    remove_checkpoint,
    save_run,
)
from audioar.pipeline.calibration import Calibration
from audioar.pipeline.checkpoints import CheckpointError, checkpoint_epoch, setting_differences
from audioar.pipeline.fit import background_config, build, load_dataset, resolve_data, train_model
from audioar.pipeline.train import EpochStats
from audioar.pipeline.trained import FitSummary, TrainedModel

__all__ = ["fit_run", "load_trained", "save_trained"]

logger = logging.getLogger(__name__)

#: Prefix of the background model's entries in ``weights.pt``.
BACKGROUND = "background."
#: The file in ``RUN_DIR.partial/`` that says which settings the checkpoint was made with.
SETTINGS_FILE = "settings.json"
#: errno values of a write the disk refused (full, over quota, read-only, failing).
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def fit_run(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    use_cache: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_data: Callable[[RunConfig, Dataset, Split], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> tuple[TrainedModel, FitSummary]:
    """Fit, calibrate and save a run directory (it appears whole or not at all).

    The in-progress checkpoint lives beside the run (``RUN_DIR.partial/``) so that an
    interrupted fit can be resumed (``resume=True``) losing at most one epoch; it is removed
    once the run is saved, and also when the fit fails for a reason a resume cannot mend
    (bad data or settings, a non-finite loss). A checkpoint is never discarded silently: a
    fit over one needs ``resume`` (same settings, same split: anything else is refused and
    the checkpoint kept) or ``overwrite`` (start afresh). While it runs the fit holds
    ``RUN_DIR.lock``, so a second fit of the same directory fails at once. Under
    ``torchrun`` every process trains and only rank 0 writes.

    Args:
        cfg: The run configuration (resolved; stored in ``config.json``).
        run_dir: Where to write the run.
        use_cache: Use the on-disk feature cache.
        resume: Continue an interrupted fit of the same run directory.
        overwrite: Replace an existing run directory.
        on_epoch: Called with each epoch's stats and its comparison columns.
        progress: Called with ``(steps done, step budget)``.
        on_data: Called before training with the resolved config (the target class and
            what a conditional model is conditioned on), the data set and its split.
        on_resume: Called (after ``on_data``) with the number of epochs the resumed
            checkpoint had finished.

    Returns:
        The trained model and a summary (``summary.run_dir`` is set).

    Raises:
        DataError: ``run_dir`` exists (without ``overwrite`` or ``resume``), ``resume``
            with no checkpoint, a checkpoint without ``resume`` or ``overwrite``, or data
            that cannot be used.
        ConfigError: Bad settings, settings other than the resumed checkpoint's, or another
            fit holding ``RUN_DIR.lock``.
        CheckpointError: A checkpoint that cannot be resumed (kept).
        TrainingError: A non-finite loss.
        OSError: A write failed (e.g. no space left on device), naming the file the user
            knows (never a hidden temporary).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not overwrite and not resume:
        raise DataError(f"{run_dir} already exists; choose another --out or pass --overwrite")
    if cfg.data.split == "loso":
        raise DataError(
            "data.split=loso refits one model per speaker: use `audioar evaluate --split loso`; "
            "fit on official, random or speaker:NAME"
        )
    with hold_run_lock(run_dir) if distributed.is_main() else nullcontext():
        return _fit_locked(
            cfg, run_dir, use_cache, resume, overwrite, on_epoch, progress, on_data, on_resume
        )


def _fit_locked(
    cfg: RunConfig,
    run_dir: Path,
    use_cache: bool,
    resume: bool,
    overwrite: bool,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None,
    progress: Callable[[int, int], None] | None,
    on_data: Callable[[RunConfig, Dataset, Split], None] | None,
    on_resume: Callable[[int], None] | None,
) -> tuple[TrainedModel, FitSummary]:
    main = distributed.is_main()
    checkpoint = checkpoint_path_for(run_dir)
    shown = Path(f"{run_dir}.partial")  # RUN_DIR.partial as the user spells RUN_DIR
    if resume and not checkpoint.exists():
        what = (
            "it is a finished run: pass --overwrite (without --resume) to fit it again"
            if run_dir.exists()
            else "drop --resume to start a new fit"
        )
        raise DataError(f"{run_dir}: nothing to resume (no checkpoint at {shown}/); {what}")
    if not resume and checkpoint.exists() and not overwrite:
        raise DataError(
            f"{run_dir}: an interrupted fit left a checkpoint at {shown}/"
            f"{_epoch_note(checkpoint)}; add --resume to continue it, or --overwrite to "
            "discard it and start afresh"
        )
    if main and not resume:
        remove_checkpoint(run_dir)  # discarded (overwrite), or a folder without a checkpoint
    if main and resume:
        remove_stale_temporaries(checkpoint)  # of a fit killed while it wrote one
    dataset = load_dataset(cfg.data.root, cfg.data.layout)
    cfg = resolve_data(cfg, dataset)
    parts = split(
        dataset,
        cfg.data.split,
        validation_fraction=cfg.data.validation_fraction,
        seed=cfg.data.seed,
    )
    settings = _settings(cfg, dataset, parts)
    settings_file = checkpoint.parent / SETTINGS_FILE
    epoch = 0
    if resume:
        _check_resumable(run_dir, shown, settings_file, settings)
        epoch = checkpoint_epoch(checkpoint)
        logger.info("resuming %s from epoch %d", run_dir, epoch)
    if on_data is not None:
        on_data(cfg, dataset, parts)
    if resume and on_resume is not None:
        on_resume(epoch)
    try:
        if main and not resume:
            atomic_write(settings_file, json.dumps(settings, indent=1) + "\n")
        trained, summary = train_model(
            cfg,
            dataset,
            parts,
            use_cache=use_cache,
            checkpoint_path=checkpoint,
            resume=resume,
            on_epoch=on_epoch,
            progress=progress,
        )
    except CheckpointError:
        raise  # the checkpoint may still serve the fit it was made for: kept
    except (ConfigError, DataError, TrainingError, RunFormatError):
        if main:
            remove_checkpoint(run_dir)  # nothing a resume could continue
        raise
    except OSError as exc:  # a full disk: keep a finished epoch, else leave nothing
        if main and not checkpoint.exists():
            remove_checkpoint(run_dir)
        if exc.errno not in _DISK_ERRNOS:
            raise
        kept = _epoch_note(checkpoint).strip(" ()") if checkpoint.exists() else ""
        where = shown / checkpoint.name if exc.filename == str(checkpoint) else exc.filename
        raise _with_note(
            exc,
            where,
            f"the checkpoint of {kept} is kept in {shown}/: free some space and add --resume"
            if kept
            else "nothing was kept",
        ) from None
    except BaseException:  # interrupted: a finished epoch is kept for --resume
        if main and not checkpoint.exists():
            remove_checkpoint(run_dir)
        raise
    if main:
        try:
            save_trained(trained, summary, dataset, parts, run_dir, overwrite=overwrite or resume)
        except OSError as exc:
            raise _with_note(
                exc,
                exc.filename,
                f"the finished fit is kept in {shown}/: free some space and add --resume "
                "to save it",
            ) from None
        remove_checkpoint(run_dir)
    distributed.barrier()
    summary.run_dir = run_dir
    return trained, summary


def _epoch_note(checkpoint: Path) -> str:
    """`` (epoch N)`` for the checkpoint's finished epochs; "" when it cannot be read."""
    try:
        return f" (epoch {checkpoint_epoch(checkpoint)})"
    except CheckpointError:
        return ""


def _with_note(exc: OSError, filename: Any, note: str) -> OSError:
    """``exc`` (same errno) naming ``filename``, its reason followed by ``note``."""
    reason = exc.strerror or str(exc)
    return OSError(exc.errno, f"{reason}; {note}", None if filename is None else str(filename))


def _settings(cfg: RunConfig, dataset: Dataset, parts: Split) -> dict[str, Any]:
    """What a checkpoint was made with: the resolved config and the clips of each part of
    the split (their count and a digest of their paths, from the data set's folder, and
    labels), as JSON values."""
    base = dataset.root if dataset.root.is_dir() else dataset.root.parent

    def clips(part: list) -> str:
        digest = hashlib.sha256()
        for clip in part:
            try:
                name = clip.path.relative_to(base).as_posix()
            except ValueError:
                name = str(clip.path)
            digest.update(f"{name}\t{clip.label}\n".encode())
        return f"{len(part)} clips {digest.hexdigest()[:12]}"

    split_parts = {part: clips(items) for part, items in parts.parts().items()}
    settings = {**run_config_to_dict(cfg), "split": {"name": parts.name, **split_parts}}
    return json.loads(json.dumps(settings, default=str))


def _check_resumable(
    run_dir: Path, shown: Path, settings_file: Path, settings: dict[str, Any]
) -> None:
    """Refuse (in one line, keeping the checkpoint) a resume whose settings or split differ
    from those the checkpoint was made with."""
    try:
        stored = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        stored = None
    if not isinstance(stored, dict):
        raise ConfigError(
            f"{run_dir}: cannot resume: {shown}/ does not say which settings its checkpoint "
            f"was made with (no readable {SETTINGS_FILE}); pass --overwrite to start afresh"
        )
    changed = setting_differences({k: stored.get(k, {}) for k in settings}, settings)
    if changed:
        shown_keys = "; ".join(changed[:6]) + (
            f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
        )
        raise ConfigError(
            f"{run_dir}: cannot resume with other settings than the checkpoint's: "
            f"{shown_keys}; resume with the settings it was made with, or pass --overwrite "
            f"to start afresh (the checkpoint in {shown}/ is kept)"
        )


def save_trained(
    trained: TrainedModel,
    summary: FitSummary,
    dataset: Dataset,
    parts: Split,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
) -> None:
    """Write a fitted model as a run directory (whole or not at all): the resolved config,
    weights (with the likelihood ratio's background model), featurizer, calibration,
    history and what it was fitted on (``extra``), as :func:`load_trained` reads it.

    Raises:
        DataError: ``run_dir`` exists and ``overwrite`` is False.
    """
    run_dir = Path(run_dir)
    result, cfg, spec = summary.result, trained.config, trained.spec
    extra = {
        "fit": {
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "seconds": round(summary.seconds, 2),
            "device": str(result.device),
            "world_size": distributed.world_size(),
            "n_train": summary.n_train,
            "n_validation": summary.n_validation,
            "dims": trained.dims,
            "skipped": summary.skipped,
        },
        "data": {
            "root": str(dataset.root),
            "layout": dataset.layout,
            "machine": dataset.machine,
            "split": parts.name,
            "classes": list(dataset.labels),
            "groups": list(dataset.groups),
            "target": cfg.data.target,
            "condition": cfg.data.condition,
        },
        "model": {
            "input": {"kind": spec.kind, "shape": list(spec.shape), "levels": spec.levels},
            "classes": list(trained.classes),
            "conditional": trained.conditional,
            "score": trained.score,
            "typical_nats_per_step": trained.typical,
            "background": cfg.score.background_data if trained.background is not None else None,
        },
    }
    if trained.window_calibration is not None:  # listen's threshold for single windows
        extra["window_calibration"] = trained.window_calibration.to_dict()
    state = dict(trained.model.state_dict())
    if trained.background is not None:  # the likelihood ratio's second model, same file
        state.update({f"{BACKGROUND}{k}": v for k, v in trained.background.state_dict().items()})
    save_run(
        run_dir,
        config=run_config_to_dict(cfg),
        state_dict=state,
        featurizer=trained.featurizer.to_config(),
        calibration=trained.calibration.to_dict(),
        history=result.history,
        extra=extra,
        overwrite=overwrite,
    )
    logger.info("saved run %s (audioar %s)", run_dir, __version__)


def load_trained(run_dir: str | Path) -> TrainedModel:
    """Load a run directory written by :func:`fit_run` for scoring (CPU, eval mode).

    Raises:
        RunFormatError: Not a run directory, another format version, or weights that do not
            fit the stored configuration.
    """
    run = load_run(run_dir)
    source = str(Path(run_dir) / "config.json")
    cfg = run_config_from_dict(run.config, source=source)
    stored = run.extra.get("model") if isinstance(run.extra, dict) else None
    try:
        info = stored["input"]
        classes = [str(c) for c in stored["classes"]]
        shape = tuple(None if d is None else int(d) for d in info["shape"])
        spec = InputSpec(str(info["kind"]), shape, int(info["levels"]), 0)
    except (KeyError, TypeError, ValueError, ConfigError):
        raise RunFormatError(f"{source}: missing or invalid model input description") from None
    # a model built conditional (even on one class: then it has no posterior) takes labels
    if stored.get("conditional") or getattr(cfg.model.settings, "conditional", False):
        spec = replace(spec, classes=len(classes))
    featurizer = featurizer_from_config(run.featurizer)
    own = {k: v for k, v in run.state_dict.items() if not k.startswith(BACKGROUND)}
    rest = {k[len(BACKGROUND) :]: v for k, v in run.state_dict.items() if k.startswith(BACKGROUND)}
    background = None
    try:
        model = Standardized(build(cfg, spec), spec)
        model.load_state_dict(own)
        if rest:
            one_class = replace(spec, classes=0)
            background = Standardized(build(background_config(cfg), one_class), one_class)
            background.load_state_dict(rest)
            background.eval()
    except (RuntimeError, ConfigError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunFormatError(
            f"{run_dir}: weights do not match the stored model ({first})"
        ) from None
    model.eval()
    calibration = Calibration.from_dict(run.calibration)
    typical = stored.get("typical_nats_per_step")
    typical = float(typical) if isinstance(typical, int | float) else None
    windows = run.extra.get("window_calibration") if isinstance(run.extra, dict) else None
    window_calibration = Calibration.from_dict(windows) if isinstance(windows, dict) else None
    return TrainedModel(
        model, featurizer, calibration, cfg, spec, classes, background, typical, window_calibration
    )
