"""Evaluation of one-class density models: target-vs-rest ROC metrics and per-class tables.

A density model is trained on clips of one *target* class (the "normal" sound). Every
evaluation clip gets a log-likelihood in nats (higher = more normal); the anomaly score is
its negation. The questions asked here are the ones of the original experiment:

* does the anomaly score separate the target from every other class (ROC AUC, partial AUC
  at low false-positive rates, equal error rate)?
* does the target get the highest mean log-likelihood of all classes, and if not, which
  classes beat it (``classes_beating_target``)?

Conventions (positives are anomalies):

* ``y_true = 1`` for every non-target clip, ``0`` for target clips;
* anomaly score = ``-log_likelihood``; a clip is *predicted* anomalous when its anomaly
  score is strictly greater than the threshold (``score > threshold``).

Partial AUC (``pauc``) follows the DCASE challenge task 2 baseline, which reports
``sklearn.metrics.roc_auc_score(y_true, y_score, max_fpr=0.1)``: the area under the ROC
curve for FPR in ``[0, max_fpr]`` with the McClish standardisation
``0.5 * (1 + (A - max_fpr**2 / 2) / (max_fpr - max_fpr**2 / 2))``, so 0.5 is chance and 1.0
is perfect. The plain area divided by ``max_fpr`` (no standardisation, also in ``[0, 1]``
but with chance at ``max_fpr / 2``) is given as ``pauc_unstandardized``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, roc_curve

from audioar.errors import DataError

__all__ = [
    "evaluate_scores",
    "summarize_folds",
    "write_evaluation",
    "scores_frame",
    "equal_error_rate",
    "partial_auc",
    "EVALUATION_FILES",
]

logger = logging.getLogger(__name__)

#: Files written by :func:`write_evaluation`, by key of the returned mapping.
EVALUATION_FILES: dict[str, str] = {
    "metrics": "metrics.json",
    "per_class": "per_class.csv",
    "scores": "scores.csv",
    "roc": "roc.png",
    "per_class_loglik": "per_class_loglik.png",
    "score_hist": "score_hist.png",
}

_HEADLINE = ("auc", "pauc", "eer", "target_rank")
_THRESHOLD_KEYS = ("precision", "recall", "f1", "fpr", "tpr")


# --------------------------------------------------------------------------- ROC helpers


def equal_error_rate(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Equal error rate: the point of the ROC curve where FPR equals FNR = 1 - TPR.

    The ROC curve is piecewise linear between its operating points; the EER is read off
    by linear interpolation at the crossing of FPR and FNR.

    Args:
        y_true: (n,) 1 for positives (anomalies), 0 for negatives; both must occur.
        y_score: (n,) scores, higher = more likely positive.

    Returns:
        The EER in ``[0, 1]``: 0 for perfect separation, 0.5 for ties, 1 for reversed.

    Example:
        >>> equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
        0.0
    """
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # non-decreasing from -1 (at FPR 0) to +1 (at FPR 1)
    i = int(np.argmax(diff >= 0.0))
    if diff[i] == 0.0 or i == 0:
        return float(fpr[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def partial_auc(
    y_true: np.ndarray, y_score: np.ndarray, max_fpr: float = 0.1, *, standardized: bool = True
) -> float:
    """Area under the ROC curve for FPR in ``[0, max_fpr]``.

    Plain reference computation (trapezoids on the ROC curve, interpolated at
    ``max_fpr``); with ``standardized=True`` it equals
    ``sklearn.metrics.roc_auc_score(y_true, y_score, max_fpr=max_fpr)`` (the DCASE
    baseline's pAUC, McClish-standardised).

    Args:
        y_true: (n,) 1 for positives (anomalies), 0 for negatives; both must occur.
        y_score: (n,) scores, higher = more likely positive.
        max_fpr: upper FPR limit in ``(0, 1]``. Default 0.1.
        standardized: apply the McClish correction (chance 0.5, perfect 1.0) if True
            (default); otherwise return the area divided by ``max_fpr``.

    Returns:
        The partial AUC in ``[0, 1]``.

    References:
        McClish, "Analyzing a portion of the ROC curve", Medical Decision Making, 1989.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise DataError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    xs = np.append(fpr[:stop], max_fpr)
    ys = np.append(tpr[:stop], np.interp(max_fpr, fpr, tpr))
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
    if not standardized:
        return area / max_fpr
    lo, hi = max_fpr**2 / 2.0, max_fpr
    return 0.5 * (1.0 + (area - lo) / (hi - lo))


# --------------------------------------------------------------------------- metrics


def _check_inputs(
    log_likelihood: np.ndarray | Sequence[float], labels: Sequence[str], target: str
) -> tuple[np.ndarray, np.ndarray]:
    ll = np.asarray(log_likelihood, dtype=np.float64).reshape(-1)
    lab = np.asarray([str(x) for x in labels], dtype=object)
    if ll.shape[0] != lab.shape[0]:
        raise DataError(f"{ll.shape[0]} log-likelihoods but {lab.shape[0]} labels")
    if ll.shape[0] == 0:
        raise DataError("no clips to evaluate")
    n_nan = int(np.isnan(ll).sum())
    n_inf = int(np.isinf(ll).sum())
    if n_nan or n_inf:
        raise DataError(
            f"{n_nan + n_inf} of {ll.shape[0]} log-likelihoods are not finite "
            f"({n_nan} NaN, {n_inf} infinite)"
        )
    is_target = lab == target
    n_target = int(is_target.sum())
    if n_target == 0:
        classes = ", ".join(sorted(set(lab.tolist())))
        raise DataError(f"no clips of the target class {target!r} among {len(lab)} ({classes})")
    if n_target == len(lab):
        raise DataError(f"all {n_target} clips are of the target class {target!r}: no others")
    return ll, lab


def _threshold_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    if not math.isfinite(threshold):
        raise DataError(f"threshold must be finite, got {threshold}")
    y_pred = (score > threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, zero_division=0
    )
    tp = int(np.sum((y_pred == 1) & (y_true == 1)))
    fp = int(np.sum((y_pred == 1) & (y_true == 0)))
    tn = int(np.sum((y_pred == 0) & (y_true == 0)))
    fn = int(np.sum((y_pred == 0) & (y_true == 1)))
    return {
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "fpr": fp / (fp + tn),
        "tpr": tp / (tp + fn),
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def _rank_classes(means: Mapping[str, float]) -> dict[str, int]:
    """Competition rank by mean, 1 = highest: 1 + number of classes strictly higher."""
    return {c: 1 + sum(1 for m in means.values() if m > means[c]) for c in means}


def evaluate_scores(
    log_likelihood: np.ndarray | Sequence[float],
    labels: Sequence[str],
    target: str,
    *,
    threshold: float | None = None,
    max_fpr: float = 0.1,
    dims: int | None = None,
) -> dict[str, Any]:
    """Target-vs-rest metrics of per-clip log-likelihoods.

    Args:
        log_likelihood: (n,) log-likelihood of each clip in nats; higher = more normal.
        labels: (n,) class label of each clip.
        target: the normal class (the one the model was trained on).
        threshold: decision threshold on the anomaly score ``-log_likelihood`` (e.g. from
            calibration); a clip is predicted anomalous when its score is ``> threshold``.
            If given, adds ``precision``, ``recall``, ``f1``, ``fpr``, ``tpr`` (positive
            class = anomaly = non-target) and ``confusion``. Default None.
        max_fpr: FPR limit of the partial AUC. Default 0.1 (DCASE).
        dims: number of dimensions a log-likelihood is summed over (e.g. 257 FFT bins);
            if given, per-class means are also reported in nats per dimension. Default None.

    Returns:
        A JSON-ready dict with ``auc``, ``pauc`` (McClish-standardised, as sklearn and the
        DCASE baseline), ``pauc_unstandardized``, ``max_fpr``, ``eer``, ``target_rank``,
        ``target``, ``n_target``, ``n_other``, ``num_classes``, ``classes_beating_target``
        (classes whose mean log-likelihood is strictly higher than the target's, highest
        first), ``dims`` and ``per_class`` = ``{label: {"n", "mean_log_likelihood",
        "median_log_likelihood", "std_log_likelihood", "auc", "rank"}}`` (``auc``: target vs
        that class only, None for the target; ``rank``: 1 = highest mean;
        ``mean_log_likelihood_per_dim`` when ``dims`` is given).

    Raises:
        DataError: lengths differ, no clips, non-finite log-likelihoods, no target clips
            or no other clips, non-finite threshold.

    Example:
        >>> m = evaluate_scores([-1.0, -2.0, -9.0, -8.0], ["a", "a", "b", "c"], "a")
        >>> m["auc"], m["eer"], m["target_rank"]
        (1.0, 0.0, 1)
    """
    ll, lab = _check_inputs(log_likelihood, labels, target)
    if dims is not None and dims <= 0:
        raise DataError(f"dims must be positive, got {dims}")
    y_true = (lab != target).astype(int)
    score = -ll

    classes = sorted(set(lab.tolist()))
    means = {c: float(np.mean(ll[lab == c])) for c in classes}
    ranks = _rank_classes(means)
    per_class: dict[str, dict[str, Any]] = {}
    tmask = lab == target
    for c in sorted(classes, key=lambda c: (-means[c], c)):
        cm = lab == c
        row: dict[str, Any] = {
            "n": int(cm.sum()),
            "mean_log_likelihood": means[c],
            "median_log_likelihood": float(np.median(ll[cm])),
            "std_log_likelihood": float(np.std(ll[cm])),
            "auc": None,
            "rank": ranks[c],
        }
        if dims is not None:
            row["mean_log_likelihood_per_dim"] = means[c] / dims
        if c != target:
            both = tmask | cm
            row["auc"] = float(roc_auc_score(y_true[both], score[both]))
        per_class[c] = row

    beating = [c for c in per_class if c != target and means[c] > means[target]]
    metrics: dict[str, Any] = {
        "target": target,
        "auc": float(roc_auc_score(y_true, score)),
        "pauc": float(roc_auc_score(y_true, score, max_fpr=max_fpr)),
        "pauc_unstandardized": partial_auc(y_true, score, max_fpr, standardized=False),
        "max_fpr": float(max_fpr),
        "eer": equal_error_rate(y_true, score),
        "target_rank": ranks[target],
        "target_first": ranks[target] == 1,
        "classes_beating_target": beating,
        "n_target": int(tmask.sum()),
        "n_other": int((~tmask).sum()),
        "num_classes": len(classes),
        "dims": dims,
        "per_class": per_class,
    }
    if threshold is not None:
        metrics.update(_threshold_metrics(y_true, score, float(threshold)))
    logger.info(
        "target %r: AUC %.4f, pAUC %.4f, EER %.4f, rank %d of %d",
        target,
        metrics["auc"],
        metrics["pauc"],
        metrics["eer"],
        metrics["target_rank"],
        len(classes),
    )
    return metrics


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return float(np.mean(arr)), std


def summarize_folds(folds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-fold metrics (e.g. leave-one-speaker-out) into one summary.

    Args:
        folds: ``{fold name: metrics from evaluate_scores}``, all with the same target.

    Returns:
        ``{"folds": {name: metrics}, "num_folds", "mean": {auc, pauc, eer, target_rank},
        "std": {...} (sample standard deviation, 0 for one fold),
        "target_first_in_all_folds": bool}``; the top level also carries ``auc``, ``pauc``,
        ``eer``, ``target_rank`` (= the means), ``target``, ``n_target`` and ``n_other``
        (sums over folds), ``per_class`` (per class: means over the folds where it occurs
        of ``mean_log_likelihood``, ``median_log_likelihood`` and ``auc``; ``n`` summed;
        ``rank`` of the averaged mean) with ``classes_beating_target`` from those averaged
        means, the threshold metrics averaged when every fold has them, and ``threshold``
        when every fold used the same one.

    Raises:
        DataError: no folds, or folds with different targets.
    """
    if not folds:
        raise DataError("no folds to summarize")
    targets = {str(m["target"]) for m in folds.values()}
    if len(targets) != 1:
        raise DataError(f"folds have different targets: {', '.join(sorted(targets))}")
    target = targets.pop()
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    keys = list(_HEADLINE)
    if all(all(k in m for k in _THRESHOLD_KEYS) for m in folds.values()):
        keys += list(_THRESHOLD_KEYS)
    for key in keys:
        mean[key], std[key] = _mean_std([float(m[key]) for m in folds.values()])

    collected: dict[str, dict[str, list]] = {}
    for m in folds.values():
        for label, row in m["per_class"].items():
            acc = collected.setdefault(label, {"n": [], "mean": [], "median": [], "auc": []})
            acc["n"].append(int(row["n"]))
            acc["mean"].append(float(row["mean_log_likelihood"]))
            acc["median"].append(float(row["median_log_likelihood"]))
            if row.get("auc") is not None:
                acc["auc"].append(float(row["auc"]))
    means = {c: float(np.mean(v["mean"])) for c, v in collected.items()}
    ranks = _rank_classes(means)
    per_class = {
        c: {
            "n": int(sum(collected[c]["n"])),
            "mean_log_likelihood": means[c],
            "median_log_likelihood": float(np.mean(collected[c]["median"])),
            "auc": float(np.mean(collected[c]["auc"])) if collected[c]["auc"] else None,
            "rank": ranks[c],
            "num_folds": len(collected[c]["mean"]),
        }
        for c in sorted(collected, key=lambda c: (-means[c], c))
    }
    beating = [c for c in per_class if target in means and c != target and means[c] > means[target]]
    dims = {m.get("dims") for m in folds.values()}
    thresholds = {m.get("threshold") for m in folds.values()}
    summary: dict[str, Any] = {
        "target": target,
        **{k: mean[k] for k in keys},
        "target_rank_of_mean": ranks.get(target),
        "target_first_in_all_folds": all(int(m["target_rank"]) == 1 for m in folds.values()),
        "classes_beating_target": beating,
        "n_target": int(sum(int(m["n_target"]) for m in folds.values())),
        "n_other": int(sum(int(m["n_other"]) for m in folds.values())),
        "num_classes": len(per_class),
        "num_folds": len(folds),
        "max_fpr": next(iter(folds.values())).get("max_fpr", 0.1),
        "dims": dims.pop() if len(dims) == 1 else None,
        "mean": mean,
        "std": std,
        "per_class": per_class,
        "folds": {str(k): dict(v) for k, v in folds.items()},
    }
    if len(thresholds) == 1 and None not in thresholds:
        summary["threshold"] = thresholds.pop()  # one shared threshold (else: per fold)
    return summary


# --------------------------------------------------------------------------- files


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (temp file in the folder, then rename).

    Args:
        path: destination file; its folder must exist.
        data: the bytes to write.

    Returns:
        The destination as a Path.
    """
    path = Path(path)
    # A unique name opened with "x" (not mkstemp) so the file gets the usual umask mode.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
    out_dir: str | os.PathLike, metrics: Mapping[str, Any], scores: pd.DataFrame
) -> dict[str, Path]:
    """Write an evaluation folder: metrics, tables and figures.

    Every file is written atomically; ``metrics.json`` is written last, so its presence
    means the folder is complete.

    Args:
        out_dir: the folder (created if missing).
        metrics: from :func:`evaluate_scores` or :func:`summarize_folds`.
        scores: per-clip table with at least ``label`` and ``log_likelihood`` (see
            :func:`scores_frame`); ``anomaly_score`` is added if missing; a ``fold``
            column gives one ROC curve per fold.

    Returns:
        ``{key: path}`` for the keys of :data:`EVALUATION_FILES` (metrics, per_class,
        scores, roc, per_class_loglik, score_hist).

    Raises:
        DataError: ``scores`` lacks ``label`` or ``log_likelihood``, or ``metrics`` lacks
            ``target``.
    """
    from audioar import figures  # matplotlib is imported only when figures are drawn

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
    atomic_write_bytes(paths["scores"], table.to_csv(index=False).encode())
    atomic_write_bytes(paths["per_class"], _per_class_table(metrics).to_csv(index=False).encode())

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
            score, is_target, threshold=threshold, target=target, pooled=fold is not None
        ),
        paths["score_hist"],
    )
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(paths["metrics"], text.encode())
    logger.info("wrote evaluation to %s", out)
    return paths
