"""The evaluation folder: per-clip scores, per-class table, figures, the traces of a few clips
(``traces.npz``, models with steps) and ``metrics.json``, every file written whole or not at
all."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.atomic import atomic_write
from audioar.errors import DataError

__all__ = ["EVALUATION_FILES", "scores_frame", "write_evaluation", "write_scored"]

logger = logging.getLogger(__name__)

#: Files written by :func:`write_evaluation`, by key of the returned mapping. ``traces`` (the
#: per-step traces and spectrograms of the most anomalous and two typical target clips, see
#: :func:`audioar.pipeline.traces.trace_arrays`) only for models with steps.
EVALUATION_FILES: dict[str, str] = {
    "metrics": "metrics.json",
    "per_class": "per_class.csv",
    "scores": "scores.csv",
    "roc": "roc.png",
    "per_class_loglik": "per_class_loglik.png",
    "score_hist": "score_hist.png",
    "traces": "traces.npz",
}


def scores_frame(
    log_likelihood: np.ndarray | Sequence[float],
    labels: Sequence[str],
    *,
    paths: Sequence[str | os.PathLike] | None = None,
    folds: Sequence[str] | None = None,
    dims: int | None = None,
) -> pd.DataFrame:
    """Per-clip scores as the table :func:`write_evaluation` writes to ``scores.csv``.

    Args:
        log_likelihood: (n,) log-likelihood per clip in nats.
        labels: (n,) class labels.
        paths: (n,) clip paths. Default None (no ``path`` column).
        folds: (n,) fold name per clip, for leave-one-speaker-out. Default None.
        dims: if given, adds ``log_likelihood_per_dim``. Default None.

    Returns:
        DataFrame with columns ``[path], label, log_likelihood, anomaly_score,
        [log_likelihood_per_dim], [fold]``.
    """
    ll = np.asarray(log_likelihood, dtype=np.float64).reshape(-1)
    columns: dict[str, Any] = {}
    if paths is not None:
        columns["path"] = [str(p) for p in paths]
    columns["label"] = [str(x) for x in labels]
    columns["log_likelihood"] = ll
    columns["anomaly_score"] = -ll
    if dims is not None:
        columns["log_likelihood_per_dim"] = ll / dims
    if folds is not None:
        columns["fold"] = [str(f) for f in folds]
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise DataError(f"scores_frame: columns of different lengths {sorted(lengths)}")
    return pd.DataFrame(columns)


def _jsonable(value: Any) -> Any:
    """Plain Python for json.dumps: numpy scalars unwrapped, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _per_class_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    rows = [
        {
            "label": label,
            "n": row.get("n"),
            "mean_log_likelihood": row.get("mean_log_likelihood"),
            "median_log_likelihood": row.get("median_log_likelihood"),
            "auc_vs_target": row.get("auc"),
            "rank": row.get("rank"),
        }
        for label, row in metrics.get("per_class", {}).items()
    ]
    table = pd.DataFrame(
        rows,
        columns=[
            "label",
            "n",
            "mean_log_likelihood",
            "median_log_likelihood",
            "auc_vs_target",
            "rank",
        ],
    )
    return table.sort_values(["rank", "label"], kind="stable").reset_index(drop=True)


def write_evaluation(
    out_dir: str | os.PathLike,
    metrics: Mapping[str, Any],
    scores: pd.DataFrame,
    *,
    traces: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write an evaluation folder: metrics, tables, figures and the examples' traces.

    Every file is written atomically; ``metrics.json`` is written last, so its presence
    means the folder is complete.

    Args:
        out_dir: the folder (created if missing).
        metrics: from :func:`evaluate_scores` or :func:`summarize_folds`.
        scores: per-clip table with at least ``label`` and ``log_likelihood`` (see
            :func:`scores_frame`); ``anomaly_score`` is added if missing; a ``fold``
            column gives one ROC curve per fold.
        traces: the arrays of ``traces.npz`` (:func:`audioar.pipeline.traces.trace_arrays`). Default
            None: no traces, and a ``traces.npz`` left by an earlier evaluation is removed.

    Returns:
        ``{key: path}`` for the keys of :data:`EVALUATION_FILES` that were written
        (metrics, per_class, scores, roc, per_class_loglik, score_hist, and traces when
        given).

    Raises:
        DataError: ``scores`` lacks ``label`` or ``log_likelihood``, or ``metrics`` lacks
            ``target``.
    """
    from audioar.report import figures  # matplotlib is imported only when figures are drawn

    missing = [c for c in ("label", "log_likelihood") if c not in scores.columns]
    if missing:
        raise DataError(f"scores table lacks column(s): {', '.join(missing)}")
    if "target" not in metrics:
        raise DataError("metrics lack the 'target' key")
    target = str(metrics["target"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in EVALUATION_FILES.items()}

    table = scores.copy()
    table["label"] = table["label"].astype(str)
    if "anomaly_score" not in table.columns:
        table["anomaly_score"] = -table["log_likelihood"].astype(float)
    first = [c for c in ("path", "label", "log_likelihood", "anomaly_score") if c in table]
    table = table[first + [c for c in table.columns if c not in first]]
    atomic_write(paths["scores"], table.to_csv(index=False))
    atomic_write(paths["per_class"], _per_class_table(metrics).to_csv(index=False))

    table = table[table["label"] != ""]  # clips without a label are scored, not evaluated
    ll = table["log_likelihood"].to_numpy(dtype=np.float64)
    labels = table["label"].to_numpy()
    is_target = labels == target
    score = table["anomaly_score"].to_numpy(dtype=np.float64)
    fold = table["fold"].astype(str).to_numpy() if "fold" in table.columns else None
    max_fpr = float(metrics.get("max_fpr") or 0.1)
    threshold = metrics.get("threshold")
    figures.save_figure(
        figures.roc_figure(~is_target, score, folds=fold, max_fpr=max_fpr, target=target),
        paths["roc"],
    )
    figures.save_figure(
        figures.per_class_boxplot_figure(ll, labels, target), paths["per_class_loglik"]
    )
    figures.save_figure(
        figures.score_histogram_figure(
            score,
            is_target,
            threshold=threshold,
            target=target,
            pooled=fold is not None,
            score=metrics.get("score"),
        ),
        paths["score_hist"],
    )
    if traces is not None:
        from audioar.pipeline.traces import traces_bytes

        atomic_write(paths["traces"], traces_bytes(traces))
    else:
        paths.pop("traces").unlink(missing_ok=True)  # never show another evaluation's traces
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write(paths["metrics"], text)
    logger.info("wrote evaluation to %s", out)
    return paths


def write_scored(
    out_dir: str | os.PathLike, metrics: Mapping[str, Any], scores: pd.DataFrame
) -> dict[str, Path]:
    """Write the folder of clips that were scored but cannot be evaluated (no labels, e.g.
    a DCASE evaluation set): ``scores.csv``, then ``metrics.json`` (which says so); the
    figures and per-class table of an earlier evaluation there are removed.

    Returns:
        ``{"scores": path, "metrics": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in EVALUATION_FILES.items()}
    atomic_write(paths["scores"], scores.to_csv(index=False))
    for key in ("per_class", "roc", "per_class_loglik", "score_hist", "traces"):
        paths.pop(key).unlink(missing_ok=True)  # never show another evaluation's results
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write(paths["metrics"], text)
    return {"scores": paths["scores"], "metrics": paths["metrics"]}
