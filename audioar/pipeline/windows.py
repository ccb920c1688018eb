"""Clips cut into windows: every window an example, every clip's score an aggregate of its
windows' scores.

A run with ``features.window_seconds`` featurizes with a
:class:`audioar.features.windows.Windowed` featurizer: a clip's features are ``(windows,
*inner)``, one row per window (a 10-minute recording in 1-s windows gives 600 rows, read as
a stream). Training takes every window as an example of the clip's class; scoring scores
every window (:func:`audioar.pipeline.scoring.clip_scores`) and aggregates each score over a clip's
windows (:class:`WindowedScores`, ``score.aggregate``): ``mean``, ``max`` (the most unusual
window) or ``quantile:<q>`` of the windows' anomaly scores. The windows' scores, with their
times, are the clip's trace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from audioar.config.sections import aggregate_quantile
from audioar.features import Featurizer
from audioar.features.windows import Windowed

__all__ = ["is_windowed", "model_featurizer", "expand", "aggregate"]


def is_windowed(featurizer: Featurizer) -> bool:
    """Whether ``featurizer`` cuts clips into windows."""
    return isinstance(featurizer, Windowed)


def model_featurizer(featurizer: Featurizer) -> Featurizer:
    """The featurizer of one model input: the windowed featurizer's inner one, else itself."""
    return featurizer.inner if isinstance(featurizer, Windowed) else featurizer


def expand(features: Sequence[Tensor]) -> tuple[list[Tensor], np.ndarray]:
    """Windowed clips' features -> one item per window and the clip each came from.

    Args:
        features: One ``(windows, *inner)`` tensor per clip.

    Returns:
        ``(items, owner)``: ``items`` one ``inner``-shaped tensor per window, clips in
        order and windows in time order; ``owner`` ``(windows,)`` int64, the clip index of
        each.
    """
    items: list[Tensor] = []
    owner: list[int] = []
    for i, x in enumerate(features):
        items.extend(x.unbind(0))
        owner.extend([i] * len(x))
    return items, np.asarray(owner, dtype=np.int64)


def aggregate(values: np.ndarray, owner: np.ndarray, n: int, how: str) -> np.ndarray:
    """A per-clip score from its windows' scores (higher = more normal).

    Args:
        values: ``(windows,)`` a score of every window (higher = more normal).
        owner: ``(windows,)`` the clip of each window, in ``0 .. n - 1``.
        n: Clips.
        how: ``mean`` | ``max`` | ``quantile:<q>``, of the windows' *anomaly* scores
            (``max``: the clip is as unusual as its most unusual window, i.e. the minimum
            of ``values``).

    Returns:
        ``(n,)`` float64; NaN for a clip without windows.
    """
    values = np.asarray(values, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    q = aggregate_quantile(how)
    out = np.full(n, np.nan)
    if not len(values):
        return out
    if math.isnan(q):  # mean
        sums = np.bincount(owner, weights=values, minlength=n)
        counts = np.bincount(owner, minlength=n)
        np.divide(sums, counts, out=out, where=counts > 0)
        return out
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(n + 1))
    for i in range(n):
        part = values[order[starts[i] : starts[i + 1]]]
        if len(part):
            out[i] = -np.quantile(-part, q)
    return out
