"""Evaluate a run on held-out clips: the likelihood comparison of every class with the target.

``official`` / ``random`` / ``speaker:NAME`` score the test part of that split with the saved
model; ``loso`` refits the run's configuration once per held-out speaker and reports every
fold and the mean.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.data import Split, loso_folds, split
from audioar.errors import DataError
from audioar.evaluate import evaluate_scores, scores_frame, summarize_folds, write_evaluation
from audioar.pipeline import TrainedModel, featurize, load_dataset, train_model, with_split
from audioar.scoring import log_likelihoods

__all__ = ["Evaluation", "score_test_part", "evaluate_run"]

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What :func:`evaluate_run` returns."""

    metrics: dict[str, Any]
    scores: pd.DataFrame
    files: dict[str, Path]
    skipped: dict[str, str]


def score_test_part(
    trained: TrainedModel, parts: Split, *, use_cache: bool = True
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, str]]:
    """Score every test clip of ``parts`` and compute the metrics against the target.

    A class-conditional run is scored by :func:`audioar.conditional.evaluate_part` (three
    scores, the chosen one in the headline metrics).

    Returns:
        ``(metrics, per-clip scores table, {path: reason} for skipped clips)``.
    """
    if not parts.test:
        raise DataError(f"split {parts.name!r} has no test clips")
    if trained.classes is not None:
        from audioar.conditional import evaluate_part

        metrics, table, skipped = evaluate_part(trained, parts.test, use_cache=use_cache)
        metrics["split"] = parts.name
        return metrics, table, skipped
    x, kept, skipped = featurize(trained.featurizer, parts.test, use_cache=use_cache)
    if not kept:
        raise DataError(f"none of the {len(parts.test)} test clips could be read")
    ll = log_likelihoods(trained.model, x).numpy().astype(np.float64)
    labels = [c.label for c in kept]
    metrics = evaluate_scores(
        ll,
        labels,
        trained.config.data.target,
        threshold=trained.calibration.threshold,
        dims=trained.dims,
    )
    metrics["split"] = parts.name
    table = scores_frame(ll, labels, paths=[c.path for c in kept], dims=trained.dims)
    table["speaker"] = [c.speaker for c in kept]
    table["p_value"] = trained.calibration.p_values(-ll)
    return metrics, table, skipped


def evaluate_run(
    trained: TrainedModel,
    *,
    data_root: str | Path | None = None,
    scheme: str | None = None,
    out_dir: str | Path,
    use_cache: bool = True,
    on_fold: Callable[[str, dict[str, Any]], None] | None = None,
) -> Evaluation:
    """Evaluate ``trained`` on a data set's held-out clips and write the evaluation folder.

    Args:
        trained: The loaded run.
        data_root: Data set to evaluate on. Default None: the one the run was fitted on.
        scheme: ``official`` | ``random`` | ``speaker:NAME`` | ``loso``. Default None: the
            run's own split.
        out_dir: Evaluation folder (``metrics.json``, ``per_class.csv``, ``scores.csv``,
            figures).
        use_cache: Use the on-disk feature cache.
        on_fold: For ``loso``, called with each fold's name and metrics as it finishes.

    Returns:
        The :class:`Evaluation`.
    """
    cfg = trained.config
    root = data_root if data_root is not None else cfg.data.root
    scheme = scheme or cfg.data.split
    dataset = load_dataset(root)
    if cfg.data.target not in dataset.labels:
        raise DataError(
            f"the run's class {cfg.data.target!r} is not in {dataset.root}; known classes: "
            + ", ".join(dataset.labels)
        )
    if scheme != "loso":
        parts = split(
            dataset, scheme, validation_fraction=cfg.data.validation_fraction, seed=cfg.data.seed
        )
        metrics, table, skipped = score_test_part(trained, parts, use_cache=use_cache)
        files = write_evaluation(out_dir, metrics, table)
        return Evaluation(metrics, table, files, skipped)

    fold_metrics: dict[str, dict[str, Any]] = {}
    tables = []
    skipped: dict[str, str] = {}
    folds = loso_folds(
        dataset, validation_fraction=cfg.data.validation_fraction, seed=cfg.data.seed
    )
    for parts in folds:
        fold_cfg = with_split(cfg, parts.name)
        fold_model, summary = train_model(fold_cfg, dataset, parts, use_cache=use_cache)
        metrics, table, fold_skipped = score_test_part(fold_model, parts, use_cache=use_cache)
        metrics["fit"] = {
            "best_epoch": summary.result.best_epoch,
            "seconds": round(summary.seconds, 2),
            "n_train": summary.n_train,
        }
        name = parts.name.removeprefix("speaker:")
        fold_metrics[name] = metrics
        table["fold"] = name
        tables.append(table)
        skipped.update(summary.skipped)
        skipped.update(fold_skipped)
        logger.info("fold %s: auc %.3f rank %d", name, metrics["auc"], metrics["target_rank"])
        if on_fold is not None:
            on_fold(name, metrics)
    summary_metrics = summarize_folds(fold_metrics)
    summary_metrics["split"] = "loso"
    if all("scores" in m for m in fold_metrics.values()):
        from audioar.conditional import summarize_scores

        summary_metrics["score"] = next(iter(fold_metrics.values()))["score"]
        summary_metrics["scores"] = summarize_scores(fold_metrics)
    table = pd.concat(tables, ignore_index=True)
    files = write_evaluation(out_dir, summary_metrics, table)
    return Evaluation(summary_metrics, table, files, skipped)
