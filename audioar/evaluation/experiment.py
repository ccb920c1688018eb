"""Evaluate a run on held-out clips: the likelihood comparison of every class with the target.

``official`` / ``random`` / ``speaker:NAME`` score the test part of that split with the saved
model; ``loso`` refits the run's configuration once per held-out speaker and reports every
fold and the mean. The same code serves every model family: the scores come from
:mod:`audioar.pipeline.scoring`, the chosen one (``score.method``) drives the headline metrics and
every other available score is reported beside it.

Every AUC, pAUC and EER comes with a bootstrap interval (``metrics["ci"]``, and ``ci`` beside
each score in ``metrics["scores"]``): clips are resampled (stratified by target / other) for
``official`` and ``random``, speakers for speaker-disjoint test parts with several speakers;
a ``speaker:NAME`` test part has one speaker, so its clips are resampled (``note`` says so).
For ``loso`` the top-level interval is of the mean over folds (held-out speakers resampled),
each fold has its own (clips), and ``metrics["pooled"]`` gives the AUC of all folds' scores
pooled with a speaker interval. Models with steps also get ``traces.npz``: the per-step
traces and spectrograms of the most anomalous test clips and two typical target clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.data.clips import DCASE_LAYOUTS, UNLABELED
from audioar.data.discovery import Clip, Dataset, Split, loso_folds, split
from audioar.errors import DataError
from audioar.evaluation.bootstrap import (
    CI_LEVEL,
    DEFAULT_RESAMPLES,
    bootstrap_intervals,
    fold_mean_intervals,
)
from audioar.evaluation.files import EVALUATION_FILES, write_evaluation, write_scored
from audioar.evaluation.metrics import evaluate_scores, summarize_folds, summarize_scores
from audioar.evaluation.sections import section_metrics, write_official_files
from audioar.pipeline.featurize import featurize
from audioar.pipeline.fit import load_dataset, train_model, with_split
from audioar.pipeline.scoring import SCORE_COLUMN, ClipScores, WindowedScores, score_features
from audioar.pipeline.traces import ONE_STEP_NOTE, pick_examples, trace_arrays, trace_examples
from audioar.pipeline.trained import TrainedModel
from audioar.pipeline.windows import is_windowed

__all__ = [
    "Evaluation",
    "clip_table",
    "evaluate_clips",
    "add_intervals",
    "score_test_part",
    "evaluate_run",
]

logger = logging.getLogger(__name__)

_HEADLINE = ("auc", "pauc", "eer", "target_rank", "target_first")
#: The challenge year a DCASE layout is scored as by default.
DCASE_DEFAULT_YEAR = {"dcase2020": 2020, "dcase2021": 2023}


@dataclass
class Evaluation:
    """What :func:`evaluate_run` returns."""

    metrics: dict[str, Any]
    scores: pd.DataFrame
    files: dict[str, Path]
    skipped: dict[str, str]


def clip_table(
    trained: TrainedModel, scores: ClipScores | WindowedScores, clips: Sequence[Clip]
) -> pd.DataFrame:
    """The per-clip table of scored clips: ``path, label, speaker`` (and ``group``,
    ``domain`` where clips carry them), every score, ``nats_per_dim``, ``anomaly_score``
    (minus the chosen score), ``p_value``, ``is_anomaly`` and, for a conditional model,
    ``ll_<class>``."""
    table = pd.DataFrame(
        {
            "path": [str(c.path) for c in clips],
            "label": [c.label for c in clips],
            "speaker": [c.speaker for c in clips],
        }
    )
    for name in ("group", "domain"):
        if any(getattr(c, name) is not None for c in clips):
            table[name] = [getattr(c, name) for c in clips]
    for column, values in scores.columns().items():
        table[column] = values
    anomaly = -scores.score(SCORE_COLUMN[trained.score])
    table["anomaly_score"] = anomaly
    table["p_value"] = trained.calibration.p_values(anomaly)
    table["is_anomaly"] = trained.calibration.is_anomaly(anomaly)
    return table


def evaluate_clips(
    trained: TrainedModel, scores: ClipScores | WindowedScores, clips: Sequence[Clip]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and the per-clip table of scored clips.

    The headline metrics and per-class tables use the chosen score (``metrics["score"]``
    names its column); with more than one score, ``metrics["scores"][column]`` holds the
    headline metrics (``auc``, ``pauc``, ``eer``, ``target_rank``, ``target_first``) of each.
    Clips without a label (a DCASE evaluation set's test clips) are in the table, not in
    the metrics (``metrics["unlabeled"]`` counts them).

    Returns:
        ``(metrics, table)``, the table as :func:`clip_table` makes it.

    Raises:
        DataError: No clip has a label.
    """
    labels = [c.label for c in clips]
    labelled = np.asarray([label != UNLABELED for label in labels])
    if not labelled.any():
        raise DataError(
            f"none of the {len(clips)} test clips has a label (an evaluation set?): score "
            "them with `audioar score`"
        )
    known = [label for label in labels if label != UNLABELED]
    target = trained.config.data.target
    chosen = SCORE_COLUMN[trained.score]
    per_dim = trained.dims if trained.spec.kind == "vector" and trained.score == "raw" else None
    metrics = evaluate_scores(
        scores.score(chosen)[labelled],
        known,
        target,
        threshold=trained.calibration.threshold,
        dims=per_dim,
    )
    metrics["score"] = chosen
    if not labelled.all():
        metrics["unlabeled"] = int((~labelled).sum())
    if len(scores.available) > 1:
        metrics["scores"] = {}
        for name in scores.available:
            column = SCORE_COLUMN[name]
            m = (
                metrics
                if column == chosen
                else evaluate_scores(scores.score(column)[labelled], known, target)
            )
            metrics["scores"][column] = {key: m[key] for key in _HEADLINE}
    table = clip_table(trained, scores, clips)
    return metrics, table


def add_intervals(
    metrics: dict[str, Any],
    table: pd.DataFrame,
    *,
    by_speaker: bool,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> None:
    """Add bootstrap intervals to :func:`evaluate_clips`' metrics, in place.

    ``metrics["ci"]`` is the interval of the chosen score (``metrics["score"]``), and every
    row of ``metrics["scores"]`` gets its own ``ci`` (the same resamples for every score).

    Args:
        metrics: From :func:`evaluate_clips`.
        table: Its per-clip table (``label``, ``speaker`` and the score columns).
        by_speaker: Resample speakers (a speaker-disjoint test part), else clips.
        resamples: Bootstrap resamples (0: no intervals). Default 1000.
        level: Coverage. Default 0.95.
        seed: Seed of the resampling. Default 0.
    """
    if resamples <= 0:
        return
    table = table[table["label"].astype(str) != UNLABELED]  # scored, not evaluated
    labels = table["label"].astype(str).tolist()
    groups = None
    if by_speaker:
        groups = [None if pd.isna(s) else str(s) for s in table["speaker"]]
    max_fpr = float(metrics.get("max_fpr") or 0.1)

    def interval(column: str) -> dict[str, Any]:
        return bootstrap_intervals(
            table[column].to_numpy(dtype=float),
            labels,
            str(metrics["target"]),
            groups=groups,
            resamples=resamples,
            level=level,
            seed=seed,
            max_fpr=max_fpr,
        )

    metrics["ci"] = interval(metrics["score"])
    for column, row in (metrics.get("scores") or {}).items():
        if column in table.columns:
            row["ci"] = metrics["ci"] if column == metrics["score"] else interval(column)


def _score_test_clips(
    trained: TrainedModel, parts: Split, use_cache: bool
) -> tuple[ClipScores | WindowedScores, list[Clip], dict[str, str]]:
    """Scores of the readable test clips of ``parts`` (each against its own group where the
    run is conditioned on groups), the clips, and ``{path: reason}`` of those skipped."""
    if not parts.test:
        raise DataError(f"split {parts.name!r} has no test clips")
    features, kept, skipped = featurize(trained.featurizer, parts.test, use_cache=use_cache)
    if not kept:
        raise DataError(f"none of the {len(parts.test)} test clips could be read")
    return score_features(trained, features, [c.group for c in kept]), kept, skipped


def score_test_part(
    trained: TrainedModel,
    parts: Split,
    *,
    use_cache: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, str]]:
    """Score every test clip of ``parts`` and compute the metrics against the target.

    The metrics carry bootstrap intervals (:func:`add_intervals`): speakers are resampled
    for a ``speaker:`` split (one held-out speaker: its clips are, and ``ci["note"]`` says
    so), clips otherwise; seeded with the run's ``data.seed``.

    Args:
        trained: The run.
        parts: The split whose test part is scored.
        use_cache: Use the feature cache.
        resamples: Bootstrap resamples (0: no intervals). Default 1000.
        level: Coverage of the intervals. Default 0.95.

    Returns:
        ``(metrics, per-clip scores table, {path: reason} for skipped clips)``.
    """
    scores, kept, skipped = _score_test_clips(trained, parts, use_cache)
    metrics, table = evaluate_clips(trained, scores, kept)
    metrics["split"] = parts.name
    add_intervals(
        metrics,
        table,
        by_speaker=parts.name.startswith("speaker:"),
        resamples=resamples,
        level=level,
        seed=trained.config.data.seed,
    )
    return metrics, table, skipped


def _examples(
    trained: TrainedModel,
    table: pd.DataFrame,
    clips: Sequence[Clip],
    *,
    fold: str = "",
    center: float | None = None,
    use_cache: bool = True,
) -> list[dict[str, Any]]:
    """Traces of the most anomalous and two typical target clips of a scored table."""
    by_path = {str(c.path): c for c in clips}
    picks = pick_examples(
        table["anomaly_score"].to_numpy(dtype=float),
        table["label"].astype(str).tolist(),
        trained.config.data.target,
        center=center,
    )
    rows = [table.iloc[i] for i, _ in picks]
    return trace_examples(
        trained,
        [by_path[str(r["path"])] for r in rows],
        kinds=[kind for _, kind in picks],
        anomaly_score=[float(r["anomaly_score"]) for r in rows],
        fold=fold,
        use_cache=use_cache,
    )


def _trace_note(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "file": EVALUATION_FILES["traces"],
        "clips": len(examples),
        "what": "log p(x_t | x_<t) per step under the target (class-conditional: given it)",
    }


def evaluate_run(
    trained: TrainedModel,
    *,
    data_root: str | Path | None = None,
    scheme: str | None = None,
    out_dir: str | Path,
    use_cache: bool = True,
    on_fold: Callable[[str, dict[str, Any]], None] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    traces: bool = True,
    layout: str | None = None,
    dcase_year: int | None = None,
) -> Evaluation:
    """Evaluate ``trained`` on a data set's held-out clips and write the evaluation folder.

    On a DCASE folder (layouts ``dcase2020``, ``dcase2021``) the metrics also get a
    ``sections`` block (AUC and pAUC per machine ID / section, and per domain) and the
    ``official`` score of the challenge year, and the folder the challenge's files
    (``anomaly_score_<machine>_...csv``, ``decision_result_<machine>_...csv``; see
    :mod:`audioar.evaluation.sections`).

    Args:
        trained: The loaded run.
        data_root: Data set to evaluate on. Default None: the one the run was fitted on.
        scheme: ``official`` | ``random`` | ``speaker:NAME`` | ``loso``. Default None: the
            run's own split.
        out_dir: Evaluation folder (``metrics.json``, ``per_class.csv``, ``scores.csv``,
            figures).
        use_cache: Use the on-disk feature cache.
        on_fold: For ``loso``, called with each fold's name and metrics as it finishes.
        resamples: Bootstrap resamples of the confidence intervals (0: none). Default 1000.
        level: Coverage of the intervals. Default 0.95.
        traces: Write ``traces.npz`` (models with steps). Default True.
        layout: Force the data set's layout. Default None: the run's when evaluating on its
            own data, else detected.
        dcase_year: The DCASE challenge year whose official score and file names to use.
            Default None: 2020 for a ``dcase2020`` folder, 2023 for section names.

    Returns:
        The :class:`Evaluation`.
    """
    cfg = trained.config
    root = data_root if data_root is not None else cfg.data.root
    scheme = scheme or cfg.data.split
    if layout is None and data_root is None:
        layout = cfg.data.layout
    dataset = load_dataset(root, layout)
    if cfg.data.target not in dataset.labels:
        raise DataError(
            f"the run's class {cfg.data.target!r} is not in {dataset.root}; known classes: "
            + ", ".join(dataset.labels)
        )
    has_steps = trained.spec.kind != "vector" or is_windowed(trained.featurizer)
    if scheme != "loso":
        parts = split(
            dataset, scheme, validation_fraction=cfg.data.validation_fraction, seed=cfg.data.seed
        )
        if dataset.layout in DCASE_LAYOUTS and all(c.label == UNLABELED for c in parts.test):
            year = dcase_year or DCASE_DEFAULT_YEAR[dataset.layout]
            return _score_evaluation_set(trained, dataset, parts, out_dir, year, use_cache)
        metrics, table, skipped = score_test_part(
            trained, parts, use_cache=use_cache, resamples=resamples, level=level
        )
        arrays = None
        if traces and has_steps:
            examples = _examples(trained, table, parts.test, use_cache=use_cache)
            arrays = trace_arrays(examples, score=metrics["score"])
            metrics["traces"] = _trace_note(examples)
        elif traces:
            metrics["traces"] = {"skipped": ONE_STEP_NOTE}
        official: dict[str, Path] = {}
        if dataset.layout in DCASE_LAYOUTS:
            year = dcase_year or DCASE_DEFAULT_YEAR[dataset.layout]
            metrics.update(
                section_metrics(
                    table,
                    year=year,
                    normal=cfg.data.target,
                    resamples=resamples,
                    level=level,
                    seed=cfg.data.seed,
                )
            )
            machine = dataset.machine or Path(dataset.root).name
            written = write_official_files(
                out_dir, table, machine=machine, year=year, decisions=True
            )
            official = {f"official:{p.name}": p for p in written}
        files = write_evaluation(out_dir, metrics, table, traces=arrays)
        return Evaluation(metrics, table, {**files, **official}, skipped)

    fold_metrics: dict[str, dict[str, Any]] = {}
    tables = []
    candidates: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    folds = loso_folds(
        dataset, validation_fraction=cfg.data.validation_fraction, seed=cfg.data.seed
    )
    for parts in folds:
        fold_cfg = with_split(cfg, parts.name)
        fold_model, summary = train_model(fold_cfg, dataset, parts, use_cache=use_cache)
        metrics, table, fold_skipped = score_test_part(
            fold_model, parts, use_cache=use_cache, resamples=resamples, level=level
        )
        name = parts.name.removeprefix("speaker:")
        if traces and has_steps:  # this fold's candidates, traced with this fold's model
            candidates += _examples(fold_model, table, parts.test, fold=name, use_cache=use_cache)
        metrics["fit"] = {
            "best_epoch": summary.result.best_epoch,
            "seconds": round(summary.seconds, 2),
            "n_train": summary.n_train,
        }
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
    summary_metrics["score"] = next(iter(fold_metrics.values()))["score"]
    if all("scores" in m for m in fold_metrics.values()):
        summary_metrics["scores"] = summarize_scores(fold_metrics)
    table = pd.concat(tables, ignore_index=True)
    if resamples > 0:
        _loso_intervals(summary_metrics, fold_metrics, table, resamples, level, cfg.data.seed)
    arrays = None
    if traces and has_steps:
        arrays = _pooled_examples(candidates, table, summary_metrics)
    elif traces:
        summary_metrics["traces"] = {"skipped": ONE_STEP_NOTE}
    files = write_evaluation(out_dir, summary_metrics, table, traces=arrays)
    return Evaluation(summary_metrics, table, files, skipped)


def _score_evaluation_set(
    trained: TrainedModel,
    dataset: Dataset,
    parts: Split,
    out_dir: str | Path,
    year: int,
    use_cache: bool,
) -> Evaluation:
    """A DCASE evaluation set (test clips without labels): scored, not evaluated. Writes
    ``scores.csv``, the challenge's files (what a submission holds) and a ``metrics.json``
    that says so."""
    scores, kept, skipped = _score_test_clips(trained, parts, use_cache)
    table = clip_table(trained, scores, kept)
    metrics: dict[str, Any] = {
        "target": trained.config.data.target,
        "score": SCORE_COLUMN[trained.score],
        "split": parts.name,
        "unlabeled": len(kept),
        "threshold": trained.calibration.threshold,
        "note": "the test clips carry no label (an evaluation set): scored, not evaluated",
    }
    machine = dataset.machine or Path(dataset.root).name
    written = write_official_files(out_dir, table, machine=machine, year=year, decisions=True)
    files = write_scored(out_dir, metrics, table)
    files.update({f"official:{p.name}": p for p in written})
    return Evaluation(metrics, table, files, skipped)


def _loso_intervals(
    summary: dict[str, Any],
    folds: dict[str, dict[str, Any]],
    table: pd.DataFrame,
    resamples: int,
    level: float,
    seed: int,
) -> None:
    """Intervals of a leave-one-speaker-out summary: of the fold means (speakers
    resampled), per score likewise, and of the pooled scores (speakers resampled)."""
    options = {"resamples": resamples, "level": level, "seed": seed}
    summary["ci"] = fold_mean_intervals(folds, **options)
    for column, row in (summary.get("scores") or {}).items():
        row["ci"] = fold_mean_intervals(
            {f: m["scores"][column] for f, m in folds.items()}, **options
        )
    column, target = summary["score"], str(summary["target"])
    labels = table["label"].astype(str).tolist()
    if column not in table.columns or len(set(labels)) < 2 or target not in labels:
        return
    pooled = evaluate_scores(table[column].to_numpy(dtype=float), labels, target)
    speakers = [None if pd.isna(s) else str(s) for s in table["speaker"]]
    summary["pooled"] = {
        **{key: pooled[key] for key in ("auc", "pauc", "eer")},
        "ci": bootstrap_intervals(
            table[column].to_numpy(dtype=float),
            labels,
            target,
            groups=speakers,
            max_fpr=float(summary.get("max_fpr") or 0.1),
            **options,
        ),
    }


def _pooled_examples(
    candidates: list[dict[str, Any]], table: pd.DataFrame, summary: dict[str, Any]
) -> dict[str, Any]:
    """The examples of a leave-one-speaker-out evaluation: among every fold's candidates,
    the most anomalous over all folds and the target clips nearest the pooled median."""
    target = str(summary["target"])
    is_target = table["label"].astype(str) == target
    center = float(table.loc[is_target, "anomaly_score"].median()) if is_target.any() else None
    picks = pick_examples(
        [c["anomaly_score"] for c in candidates],
        [c["label"] for c in candidates],
        target,
        center=center,
    )
    chosen = [{**candidates[i], "kind": kind} for i, kind in picks]
    summary["traces"] = _trace_note(chosen)
    return trace_arrays(chosen, score=summary["score"])
