"""The anomaly pipeline: data -> features -> density model -> calibrated run directory.

Everything the ``fit`` command does is :func:`fit_run`; :func:`train_model` is the same fit
in memory (used per fold by leave-one-speaker-out evaluation); :func:`load_trained` brings
a run directory back for scoring.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from audioar import __version__
from audioar.artifact import checkpoint_path_for, load_run, remove_checkpoint, save_run
from audioar.config import RunConfig, run_config_from_dict, run_config_to_dict
from audioar.data import Clip, Dataset, Split, discover, split
from audioar.errors import ConfigError, DataError, RunFormatError
from audioar.features import Featurizer, extract, featurizer_from_config
from audioar.models.build import SEQUENCE_MODELS, build_vector_model
from audioar.models.standardize import Standardized
from audioar.scoring import Calibration, calibrate, log_likelihoods
from audioar.train import EpochStats, FitResult, fit

__all__ = [
    "MAX_COMPARE_CLIPS",
    "compare_labels",
    "TrainedModel",
    "FitSummary",
    "load_dataset",
    "featurize",
    "train_model",
    "fit_run",
    "load_trained",
]

logger = logging.getLogger(__name__)

#: Clips per compared class used for the per-epoch comparison table (speed bound).
MAX_COMPARE_CLIPS = 100


@dataclass
class TrainedModel:
    """A fitted model with everything needed to score new clips.

    Attributes:
        model: The density model over features (``log_prob(x) -> (batch,)`` nats).
        featurizer: The featurizer it was trained on.
        calibration: Threshold and p-values from held-out normal clips.
        config: The resolved run configuration.
        dims: Feature dimensions (for nats per dimension); for a sequence model, the values
            per step (``n_mels`` for frames, 1 for codes).
        classes: For a class-conditional model (:mod:`audioar.conditional`), the class names
            in the order of its class indices; None for a one-class model.
    """

    model: nn.Module
    featurizer: Featurizer
    calibration: Calibration
    config: RunConfig
    dims: int
    classes: list[str] | None = None


@dataclass
class FitSummary:
    """What :func:`train_model` / :func:`fit_run` report besides the model."""

    result: FitResult
    n_train: int
    n_validation: int
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    run_dir: Path | None = None


def load_dataset(root: str | Path | None) -> Dataset:
    """Discover the data set at ``root``; None means the embedded synthetic data set.

    Raises:
        DataError: Nothing usable at ``root``.
    """
    if root is None:
        from audioar.synth import default_dataset

        root = default_dataset()
    return discover(root)


def _check_target(dataset: Dataset, target: str) -> None:
    if target not in dataset.labels:
        raise DataError(
            f"unknown class {target!r} in {dataset.root}; known classes: "
            + ", ".join(dataset.labels)
        )


def featurize(
    featurizer: Featurizer, clips: Sequence[Clip], *, use_cache: bool = True
) -> tuple[Tensor, list[Clip], dict[str, str]]:
    """Features of ``clips``; unreadable clips are skipped and reported, not fatal.

    Returns:
        ``(features (n, dims), kept clips, {path: reason} for skipped ones)``.
    """
    if not clips:
        dims = featurizer.feature_shape
        return torch.empty(0, *[d or 0 for d in dims]), [], {}
    result = extract(featurizer, [c.path for c in clips], use_cache=use_cache, on_error="skip")
    errors = {str(p): reason for p, reason in result.errors.items()}
    if errors:
        for path, reason in list(errors.items())[:5]:
            logger.warning("skipped %s: %s", path, reason)
    bad = {Path(p) for p in result.errors}
    kept = [c for c in clips if Path(c.path) not in bad]
    features = result.features
    if not isinstance(features, Tensor):
        features = torch.stack(features) if features else torch.empty(0)
    return features, kept, errors


def train_model(
    cfg: RunConfig,
    dataset: Dataset,
    parts: Split,
    *,
    use_cache: bool = True,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainedModel, FitSummary]:
    """Fit the configured model to the target class of ``parts.train`` and calibrate it.

    Early stopping and calibration use the target clips of ``parts.validation``. After every
    epoch the mean log-likelihood of each compared class (``cfg.data.compare``, default all
    other classes; their training and validation clips, which the model never trains on) is
    added to the history as ``ll_<label>``: the comparison table of the original experiment.

    Args:
        cfg: The run configuration.
        dataset: The discovered data set (for the class list).
        parts: The split to train on.
        use_cache: Use the on-disk feature cache.
        checkpoint_path: Save a resumable checkpoint there after every epoch.
        resume: Continue from ``checkpoint_path``.
        on_epoch: Called with each epoch's stats and its comparison columns.
        progress: Called with ``(steps done, step budget)``.

    Returns:
        The trained model and a summary.

    Raises:
        DataError: Unknown target class, or too few target clips to train or calibrate.
        TrainingError: A non-finite loss.
    """
    start = time.perf_counter()
    target = cfg.data.target
    _check_target(dataset, target)
    if cfg.model.name in SEQUENCE_MODELS:
        from audioar.conditional import train_conditional  # imports this module

        return train_conditional(
            cfg,
            dataset,
            parts,
            use_cache=use_cache,
            checkpoint_path=checkpoint_path,
            resume=resume,
            on_epoch=on_epoch,
            progress=progress,
        )
    if cfg.model.resolved_score != "raw":
        raise ConfigError(
            f"model.score={cfg.model.score} needs a class-conditional model (model.name="
            f"wavenet); {cfg.model.name} scores with the raw log-likelihood (model.score=raw)"
        )
    featurizer = featurizer_from_config(cfg.features.featurizer_config())
    train_clips = [c for c in parts.train if c.label == target]
    val_clips = [c for c in parts.validation if c.label == target]
    if len(train_clips) < 2:
        raise DataError(f"class {target!r} has {len(train_clips)} training clips; need at least 2")
    if not val_clips:
        raise DataError(
            f"class {target!r} has no validation clips in split {parts.name!r}; "
            "raise data.validation_fraction or add clips"
        )
    x_train, kept_train, skipped = featurize(featurizer, train_clips, use_cache=use_cache)
    x_val, kept_val, skipped_val = featurize(featurizer, val_clips, use_cache=use_cache)
    skipped.update(skipped_val)
    if len(kept_train) < 2 or not kept_val:
        raise DataError(f"too few readable clips of class {target!r} ({len(skipped)} skipped)")
    if x_train.dim() != 2:
        raise DataError(
            f"model {cfg.model.name!r} needs one feature vector per clip; features "
            f"{cfg.features.name!r} give shape {tuple(x_train.shape[1:])}"
        )
    compare = _compare_features(cfg, dataset, parts, featurizer, use_cache)

    torch.manual_seed(cfg.train.seed)
    dims = x_train.shape[1]
    model = Standardized(
        build_vector_model(cfg.model, dims), x_train.mean(dim=0), x_train.std(dim=0)
    )

    # All compared clips in one scoring pass per epoch, split back by class.
    compare_x = torch.cat(list(compare.values())) if compare else None
    compare_sizes = [len(x) for x in compare.values()]

    def epoch_columns(stats: EpochStats) -> dict[str, float]:
        columns: dict[str, float] = {}
        if compare_x is not None:
            ll = log_likelihoods(model, compare_x, batch_size=4096)
            for label, part in zip(compare, ll.split(compare_sizes), strict=True):
                columns[f"ll_{label}"] = float(part.mean())
        if on_epoch is not None:
            on_epoch(stats, columns)
        return columns

    result = fit(
        model,
        x_train,
        x_val,
        cfg.train,
        checkpoint_path=checkpoint_path,
        resume=resume,
        on_epoch=epoch_columns,
        progress=progress,
    )
    model = model.cpu().eval()
    val_scores = -log_likelihoods(model, x_val)
    calibration = calibrate(
        val_scores.numpy(), cfg.calibration.target_fpr, method=cfg.calibration.method
    )
    trained = TrainedModel(model, featurizer, calibration, cfg, dims)
    summary = FitSummary(
        result, len(kept_train), len(kept_val), time.perf_counter() - start, skipped
    )
    return trained, summary


def compare_labels(cfg: RunConfig, labels: Sequence[str]) -> list[str]:
    """The classes tracked per epoch: ``cfg.data.compare``, default every other class.

    Raises:
        DataError: A compared class is not among ``labels``.
    """
    chosen = list(cfg.data.compare) or [c for c in labels if c != cfg.data.target]
    unknown = [c for c in chosen if c not in labels]
    if unknown:
        raise DataError(
            f"unknown class(es) to compare: {', '.join(unknown)}; known classes: "
            + ", ".join(labels)
        )
    return chosen


def _compare_features(
    cfg: RunConfig, dataset: Dataset, parts: Split, featurizer: Featurizer, use_cache: bool
) -> dict[str, Tensor]:
    """Features of the compared classes' non-test clips, at most MAX_COMPARE_CLIPS each."""
    labels = compare_labels(cfg, dataset.labels)
    clips = []
    for label in labels:
        clips += [c for c in parts.train + parts.validation if c.label == label][:MAX_COMPARE_CLIPS]
    x, kept, _ = featurize(featurizer, clips, use_cache=use_cache)  # one extract call
    kept_labels = [c.label for c in kept]
    out = {}
    for label in labels:
        rows = [i for i, lab in enumerate(kept_labels) if lab == label]
        if rows:
            out[label] = x[rows]
    return out


def fit_run(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    use_cache: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainedModel, FitSummary]:
    """Fit, calibrate and save a run directory (it appears whole or not at all).

    The in-progress checkpoint lives beside the run (``RUN_DIR.partial/``) so that an
    interrupted fit can be resumed (``resume=True``) losing at most one epoch; it is removed
    once the run is saved.

    Args:
        cfg: The run configuration (resolved; stored in ``config.json``).
        run_dir: Where to write the run.
        use_cache: Use the on-disk feature cache.
        resume: Continue an interrupted fit of the same run directory.
        overwrite: Replace an existing run directory.
        on_epoch: Called with each epoch's stats and its comparison columns.
        progress: Called with ``(steps done, step budget)``.

    Returns:
        The trained model and a summary (``summary.run_dir`` is set).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not overwrite and not resume:
        raise DataError(f"{run_dir} already exists; choose another --out or pass --overwrite")
    dataset = load_dataset(cfg.data.root)
    if cfg.data.split == "loso":
        raise DataError(
            "data.split=loso refits one model per speaker: use `audioar evaluate --split loso`; "
            "fit on official, random or speaker:NAME"
        )
    parts = split(
        dataset,
        cfg.data.split,
        validation_fraction=cfg.data.validation_fraction,
        seed=cfg.data.seed,
    )
    checkpoint = checkpoint_path_for(run_dir)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
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
    result = summary.result
    extra = {
        "fit": {
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "seconds": round(summary.seconds, 2),
            "device": str(result.device),
            "n_train": summary.n_train,
            "n_validation": summary.n_validation,
            "dims": trained.dims,
            "skipped": summary.skipped,
        },
        "data": {
            "root": str(dataset.root),
            "layout": dataset.layout,
            "split": parts.name,
            "classes": list(dataset.labels),
            "target": cfg.data.target,
        },
    }
    if trained.classes is not None:
        extra["conditional"] = {"classes": list(trained.classes), "score": cfg.model.resolved_score}
    save_run(
        run_dir,
        config=run_config_to_dict(cfg),
        state_dict=trained.model.state_dict(),
        featurizer=trained.featurizer.to_config(),
        calibration=trained.calibration.to_dict(),
        history=result.history,
        extra=extra,
        overwrite=overwrite or resume,
    )
    remove_checkpoint(run_dir)
    summary.run_dir = run_dir
    logger.info("saved run %s (audioar %s)", run_dir, __version__)
    return trained, summary


def load_trained(run_dir: str | Path) -> TrainedModel:
    """Load a run directory written by :func:`fit_run` for scoring (CPU, eval mode).

    Raises:
        RunFormatError: Not a run directory, another format version, or weights that do not
            fit the stored configuration.
    """
    run = load_run(run_dir)
    cfg = run_config_from_dict(run.config, source=str(Path(run_dir) / "config.json"))
    if cfg.model.name in SEQUENCE_MODELS:
        from audioar.conditional import load_conditional  # imports this module

        return load_conditional(run, cfg, run_dir)
    featurizer = featurizer_from_config(run.featurizer)
    dims = run.extra.get("fit", {}).get("dims") if isinstance(run.extra, dict) else None
    if dims is None:
        shape = featurizer.feature_shape
        if len(shape) != 1 or shape[0] is None:
            raise RunFormatError(f"{run_dir}: cannot tell the model's input size")
        dims = shape[0]
    model = Standardized(build_vector_model(cfg.model, dims), torch.zeros(dims), torch.ones(dims))
    try:
        model.load_state_dict(run.state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunFormatError(
            f"{run_dir}: weights do not match the stored model ({first})"
        ) from None
    model.eval()
    return TrainedModel(model, featurizer, Calibration.from_dict(run.calibration), cfg, dims)


def with_split(cfg: RunConfig, scheme: str) -> RunConfig:
    """A copy of ``cfg`` with ``data.split`` set to ``scheme``."""
    return replace(cfg, data=replace(cfg.data, split=scheme))
