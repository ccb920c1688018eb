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

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, roc_curve

from audioar.errors import DataError

__all__ = [
    "evaluate_scores",
    "summarize_folds",
    "summarize_scores",
    "equal_error_rate",
    "partial_auc",
    "check_inputs",
]

logger = logging.getLogger(__name__)


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


def check_inputs(
    log_likelihood: np.ndarray | Sequence[float],
    labels: Sequence[str],
    target: str,
    *,
    need_both: bool = True,
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
    if not need_both:
        return ll, lab
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
    ll, lab = check_inputs(log_likelihood, labels, target)
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


def summarize_scores(folds: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per score: the mean and std of the fold AUCs and whether the target ranked first in
    every fold (for runs that report several scores, ``metrics["scores"]``).

    Args:
        folds: ``{fold: metrics}`` each with ``"scores": {column: {"auc", "pauc", "eer",
            "target_rank"}}``.

    Returns:
        ``{column: {"auc", "auc_std", "pauc", "eer", "target_rank",
        "target_first_in_all_folds", "folds": {fold: auc}}}``.
    """
    columns = list(next(iter(folds.values()))["scores"]) if folds else []
    out: dict[str, dict[str, Any]] = {}
    for column in columns:
        rows = {name: m["scores"][column] for name, m in folds.items()}
        auc, auc_std = _mean_std([r["auc"] for r in rows.values()])
        out[column] = {
            "auc": auc,
            "auc_std": auc_std,
            "pauc": float(np.mean([r["pauc"] for r in rows.values()])),
            "eer": float(np.mean([r["eer"] for r in rows.values()])),
            "target_rank": float(np.mean([r["target_rank"] for r in rows.values()])),
            "target_first_in_all_folds": all(r["target_rank"] == 1 for r in rows.values()),
            "folds": {name: r["auc"] for name, r in rows.items()},
        }
    return out
