"""Bootstrap confidence intervals of the target-vs-rest metrics (AUC, pAUC, EER).

The intervals (:func:`bootstrap_intervals`, :func:`fold_mean_intervals`) are
percentile bootstrap intervals (as ``pROC::ci.auc``): the metrics are recomputed on
``resamples`` resampled data sets and the interval is the middle ``level`` of them. Clips are
resampled *stratified* (target and other clips separately, so every resample keeps the
counts of both); speaker-disjoint evaluations resample *speakers* (clusters: a speaker drawn
``k`` times brings all of its clips ``k`` times), because clips of one speaker are not
independent and a model that fails on one voice fails on all of its clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audioar.errors import DataError
from audioar.evaluation.metrics import check_inputs

__all__ = ["DEFAULT_RESAMPLES", "CI_LEVEL", "bootstrap_intervals", "fold_mean_intervals"]

#: Bootstrap resamples of a confidence interval (1,000 of 3,000 clips take about 0.1 s).
DEFAULT_RESAMPLES = 1000
#: Coverage of the confidence intervals.
CI_LEVEL = 0.95
_CI_KEYS = ("auc", "pauc", "eer")


# --------------------------------------------------------------------------- bootstrap

#: Resamples x clips per vectorised chunk of the bootstrap (small arrays stay in cache).
_CHUNK_CELLS = 250_000


def _resampled_roc_metrics(
    score: np.ndarray, positive: np.ndarray, weights: np.ndarray, max_fpr: float
) -> dict[str, np.ndarray]:
    """AUC, pAUC (McClish) and EER of many weighted copies of one scored data set at once.

    A bootstrap resample is the original clips with integer multiplicities, so every
    resample's ROC curve has its operating points at the distinct original scores: one
    cumulative sum per resample over the clips sorted by score gives all the curves. The
    AUC is the Mann-Whitney count with ties 1/2 (what ``roc_auc_score`` computes), exact in
    integers; the pAUC is the area under the curve up to ``max_fpr`` (the crossing segment
    interpolated, as sklearn) with the McClish standardisation; the EER is read off as
    :func:`equal_error_rate` does.

    Args:
        score: ``(n,)`` anomaly scores (higher = more anomalous).
        positive: ``(n,)`` bool, True for non-target clips (anomalies).
        weights: ``(b, n)`` integer multiplicity of every clip in each of ``b`` resamples.
        max_fpr: FPR limit of the partial AUC.

    Returns:
        ``{"auc", "pauc", "eer"}``, each ``(b,)``; NaN where a resample lacks positives or
        negatives.
    """
    order = np.argsort(-score, kind="stable")
    ordered = score[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])  # last clip per threshold
    # Counts are <= n and products <= 2 n**2: int32 (half the memory traffic) while that fits.
    small = np.int32 if 2 * len(score) ** 2 < 2**31 else np.int64
    w = weights[:, order].astype(small, copy=False)
    tp = np.cumsum(w * positive[order], axis=1, dtype=small)  # (b, n) positives at or above
    fp = np.cumsum(w, axis=1, dtype=small) - tp
    if len(ends) < len(ordered):  # ties: one operating point per distinct score
        tp, fp = tp[:, ends], fp[:, ends]
    n_pos, n_neg = tp[:, -1].astype(np.int64), fp[:, -1].astype(np.int64)
    ok = (n_pos > 0) & (n_neg > 0)
    pairs = np.where(ok, n_pos * n_neg, 1).astype(np.float64)
    p = np.diff(tp, axis=1, prepend=0)  # positives / negatives at each threshold
    q = np.diff(fp, axis=1, prepend=0)
    tp_before = tp - p
    auc = np.sum(q * (2 * tp_before + p), axis=1, dtype=np.int64) / (2.0 * pairs)
    # pAUC: in counts, a segment of q negatives and p positives starting at tp_before
    # covers width * tp_before + p * width**2 / (2 q) when clipped to `width` negatives.
    limit = max_fpr * n_neg.astype(np.float64)
    fp_before = fp - q
    cols = max(1, int(np.max(np.sum(fp_before < limit[:, None], axis=1))))
    width = np.clip(np.minimum(fp[:, :cols], limit[:, None]) - fp_before[:, :cols], 0.0, None)
    q_cols = q[:, :cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(q_cols > 0, p[:, :cols] * width**2 / (2.0 * q_cols), 0.0)
    area = np.sum(width * tp_before[:, :cols] + rise, axis=1) / pairs
    lo, hi = max_fpr**2 / 2.0, max_fpr
    pauc = 0.5 * (1.0 + (area - lo) / (hi - lo))
    # EER: the first point with FPR >= FNR (in integers: fp*n_pos + tp*n_neg >= n_pos*n_neg),
    # interpolated linearly from the point before it (the origin before the first).
    crit = fp * n_pos[:, None] + tp * n_neg[:, None] - (n_pos * n_neg)[:, None]
    j = np.argmax(crit >= 0, axis=1)
    rows = np.arange(len(w))
    d1 = crit[rows, j].astype(np.float64)
    f1 = fp[rows, j] / np.maximum(n_neg, 1)
    first = j == 0
    d0 = np.where(first, -(n_pos * n_neg), crit[rows, np.maximum(j - 1, 0)]).astype(np.float64)
    f0 = np.where(first, 0.0, fp[rows, np.maximum(j - 1, 0)] / np.maximum(n_neg, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(d1 != d0, -d0 / (d1 - d0), 0.0)
    eer = np.where(d1 == 0, f1, f0 + t * (f1 - f0))
    nan = np.full(len(w), np.nan)
    return {
        "auc": np.where(ok, auc, nan),
        "pauc": np.where(ok, pauc, nan),
        "eer": np.where(ok, eer, nan),
    }


def _multiplicities(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """``(b, n)`` counts of ``b`` draws of ``n`` items with replacement (each row sums to n)."""
    draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def _no_interval(method: str, resamples: int, level: float, note: str) -> dict[str, Any]:
    return {
        **{key: None for key in _CI_KEYS},
        "method": method,
        "resamples": 0,
        "level": level,
        "note": note,
    }


def bootstrap_intervals(
    log_likelihood: np.ndarray | Sequence[float],
    labels: Sequence[str],
    target: str,
    *,
    groups: Sequence[str | None] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
    max_fpr: float = 0.1,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the target-vs-rest AUC, pAUC and EER.

    Without ``groups`` clips are resampled stratified: ``n_target`` target clips and
    ``n_other`` other clips drawn with replacement, separately. With ``groups`` (the
    speaker of each clip) speakers are drawn with replacement and each brings all of its
    clips (a cluster bootstrap); resamples left without target or without other clips are
    dropped (``dropped``). One group cannot be resampled: clips are then (``method`` says
    ``"clips"`` and ``note`` why). Vectorised: every resample's ROC curve comes from one
    cumulative sum (1,000 resamples of 3,000 clips take about 0.1 s). The same ``seed``
    draws the same resamples for every score of the same clips, so scores compare paired.

    Args:
        log_likelihood: ``(n,)`` per-clip scores, higher = more normal (as
            :func:`evaluate_scores`).
        labels: ``(n,)`` class labels.
        target: The normal class.
        groups: ``(n,)`` cluster of each clip (speaker), or None (default): resample clips.
        resamples: Bootstrap resamples. Default :data:`DEFAULT_RESAMPLES` (1000).
        level: Coverage, in ``(0, 1)``. Default 0.95.
        seed: Seed of the resampling. Default 0.
        max_fpr: FPR limit of the partial AUC. Default 0.1.

    Returns:
        ``{"auc": [lo, hi], "pauc": [lo, hi], "eer": [lo, hi], "method": "clips" |
        "speakers", "resamples", "level"}`` with ``"groups"`` (speakers) for the speaker
        bootstrap, ``"dropped"`` when resamples were dropped, and ``"note"`` when something
        kept the wanted resampling from being used; the intervals are None (with a
        ``note``) when there is no target or no other clip.

    Raises:
        DataError: Lengths differ, no clips, non-finite scores, ``resamples < 1`` or
            ``level`` outside ``(0, 1)``.

    Example:
        >>> ci = bootstrap_intervals([-1.0, -2.0, -3.0, -2.5], ["a", "a", "b", "b"], "a")
        >>> ci["method"], ci["auc"]
        ('clips', [1.0, 1.0])
    """
    if resamples < 1:
        raise DataError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be in (0, 1), got {level}")
    ll, lab = check_inputs(log_likelihood, labels, target, need_both=False)
    method = "clips"
    note = ""
    codes = None
    if groups is not None:
        if len(groups) != len(ll):
            raise DataError(f"{len(groups)} groups but {len(ll)} clips")
        if any(g is None for g in groups):
            note = "some clips have no speaker: clips were resampled"
        else:
            names, codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
            if len(names) < 2:
                note = (
                    f"one speaker ({names[0]}) in the test part: speakers cannot be "
                    "resampled, so clips were (the interval is of this speaker's clips)"
                )
                codes = None
            else:
                method = "speakers"
    positive = lab != target
    n_other = int(positive.sum())
    n_target = len(lab) - n_other
    if n_target == 0 or n_other == 0:
        missing = "target" if n_target == 0 else "other"
        return _no_interval(method, resamples, level, f"no {missing} clips: no interval")
    score = -ll
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // len(ll))
    out: dict[str, list[np.ndarray]] = {key: [] for key in _CI_KEYS}
    # Stratified: target multiplicities then others', mapped back to clip order by one gather.
    slot = np.empty(len(ll), dtype=np.int64)
    slot[np.flatnonzero(~positive)] = np.arange(n_target)
    slot[np.flatnonzero(positive)] = n_target + np.arange(n_other)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        if codes is not None:
            weights = _multiplicities(rng, b, int(codes.max()) + 1)[:, codes]
        else:
            both = np.concatenate(
                [_multiplicities(rng, b, n_target), _multiplicities(rng, b, n_other)], axis=1
            )
            weights = both[:, slot]
        for key, values in _resampled_roc_metrics(score, positive, weights, max_fpr).items():
            out[key].append(values)
    values = {key: np.concatenate(v) for key, v in out.items()}
    valid = np.isfinite(values["auc"])
    dropped = int((~valid).sum())
    if valid.sum() < max(1, resamples // 2):
        return _no_interval(
            method,
            resamples,
            level,
            f"{dropped} of {resamples} resamples lacked target or other clips: no interval",
        )
    result: dict[str, Any] = {key: _percentiles(values[key][valid], level) for key in _CI_KEYS}
    result.update({"method": method, "resamples": int(valid.sum()), "level": level})
    if method == "speakers":
        result["groups"] = int(codes.max()) + 1
    if dropped:
        result["dropped"] = dropped
    if note:
        result["note"] = note
    return result


def fold_mean_intervals(
    folds: Mapping[str, Mapping[str, Any]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap intervals of the mean over leave-one-speaker-out folds (speakers resampled).

    Each fold holds out one speaker; drawing folds with replacement is the speaker (cluster)
    bootstrap of the mean fold AUC, pAUC and EER: it says how much the mean would move with
    another set of held-out speakers like these. It does not add the clip noise within a
    fold (each fold's own ``ci`` has that).

    Args:
        folds: ``{fold: {"auc", "pauc", "eer", ...}}`` (fold metrics, or the per-score rows).
        resamples: Bootstrap resamples. Default 1000.
        level: Coverage. Default 0.95.
        seed: Seed of the resampling. Default 0.

    Returns:
        As :func:`bootstrap_intervals` with ``method="speakers"`` and ``groups`` = folds;
        intervals None (with a ``note``) for fewer than two folds.
    """
    if resamples < 1:
        raise DataError(f"resamples must be at least 1, got {resamples}")
    if len(folds) < 2:
        return _no_interval(
            "speakers", resamples, level, f"{len(folds)} fold(s): speakers cannot be resampled"
        )
    table = np.asarray(
        [[float(m[key]) for key in _CI_KEYS] for m in folds.values()], dtype=np.float64
    )  # (folds, 3)
    counts = _multiplicities(np.random.default_rng(seed), resamples, len(folds))
    means = counts @ table / len(folds)  # (resamples, 3)
    result: dict[str, Any] = {
        key: _percentiles(means[:, j], level) for j, key in enumerate(_CI_KEYS)
    }
    result.update(
        {"method": "speakers", "resamples": resamples, "level": level, "groups": len(folds)}
    )
    return result
