"""The anomaly pipeline: data -> features -> density model -> calibrated run directory.

Everything the ``fit`` command does is :func:`fit_run`: the fit of
:func:`audioar.fitting.train_model` saved as a run directory (it appears whole or not at
all); :func:`load_trained` brings a run directory back for scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from audioar import __version__, distributed
from audioar.artifact import checkpoint_path_for, load_run, remove_checkpoint, save_run
from audioar.calibration import Calibration
from audioar.config import RunConfig, run_config_from_dict, run_config_to_dict
from audioar.data import Dataset, Split, split
from audioar.errors import ConfigError, DataError, RunFormatError, TrainingError
from audioar.features import featurizer_from_config
from audioar.fitting import background_config, build, load_dataset, resolve_data, train_model
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.run import FitSummary, TrainedModel
from audioar.train import EpochStats

__all__ = ["fit_run", "load_trained", "save_trained"]

logger = logging.getLogger(__name__)

#: Prefix of the background model's entries in ``weights.pt``.
BACKGROUND = "background."


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
) -> tuple[TrainedModel, FitSummary]:
    """Fit, calibrate and save a run directory (it appears whole or not at all).

    The in-progress checkpoint lives beside the run (``RUN_DIR.partial/``) so that an
    interrupted fit can be resumed (``resume=True``) losing at most one epoch; it is removed
    once the run is saved, and also when the fit fails for a reason a resume cannot mend
    (bad data or settings, a non-finite loss). Under ``torchrun`` every process trains and
    only rank 0 writes.

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

    Returns:
        The trained model and a summary (``summary.run_dir`` is set).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not overwrite and not resume:
        raise DataError(f"{run_dir} already exists; choose another --out or pass --overwrite")
    if cfg.data.split == "loso":
        raise DataError(
            "data.split=loso refits one model per speaker: use `audioar evaluate --split loso`; "
            "fit on official, random or speaker:NAME"
        )
    dataset = load_dataset(cfg.data.root, cfg.data.layout)
    cfg = resolve_data(cfg, dataset)
    parts = split(
        dataset,
        cfg.data.split,
        validation_fraction=cfg.data.validation_fraction,
        seed=cfg.data.seed,
    )
    if on_data is not None:
        on_data(cfg, dataset, parts)
    checkpoint = checkpoint_path_for(run_dir)
    try:
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
    except (ConfigError, DataError, TrainingError, RunFormatError):
        if distributed.is_main():
            remove_checkpoint(run_dir)  # nothing a resume could continue
        raise
    if distributed.is_main():
        save_trained(trained, summary, dataset, parts, run_dir, overwrite=overwrite or resume)
        remove_checkpoint(run_dir)
    distributed.barrier()
    summary.run_dir = run_dir
    return trained, summary


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
    return TrainedModel(model, featurizer, calibration, cfg, spec, classes, background, typical)
