"""Decision thresholds and p-values from the anomaly scores of held-out normal clips.

An anomaly score is higher for a more unusual clip (``-log_likelihood``, or minus any other
per-clip score). A :class:`Calibration` turns the scores of held-out *normal* clips into a
threshold (flag at most ``target_fpr`` of normal clips) and p-values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from audioar.errors import ConfigError, DataError

__all__ = ["Calibration", "calibrate", "MIN_REFERENCE"]

logger = logging.getLogger(__name__)

MIN_REFERENCE = 5  # fewest held-out normal scores a calibration accepts


@dataclass
class Calibration:
    """Decision threshold and p-values from held-out normal anomaly scores.

    Attributes:
        method: ``"empirical"`` (conformal quantile) or ``"gamma"`` (fitted gamma tail).
        target_fpr: The share of normal clips the threshold may flag.
        threshold: On the anomaly score; a clip is anomalous when its score is *above* it.
        reference: Held-out normal anomaly scores, sorted ascending.
        gamma: For ``"gamma"``: ``{"shape", "loc", "scale", "shift"}``; the gamma is fitted
            to ``reference + shift`` with ``shift = margin - min(reference)`` (anomaly scores
            ``-log p`` of densities can be negative, a gamma lives on ``x > 0``). Else None.
    """

    method: str
    target_fpr: float
    threshold: float
    reference: list[float] = field(repr=False)
    gamma: dict[str, float] | None = None

    def p_values(self, scores: Any) -> np.ndarray:
        """How surprising each anomaly score is among normal clips (small = anomalous).

        Empirical: the conformal p-value ``(1 + #{ref >= s}) / (n + 1)``, valid for a normal
        clip exchangeable with the reference ones (``P(p <= a) <= a``). Gamma: the fitted
        gamma's survival function at the shifted score.

        Args:
            scores: Anomaly scores, any array-like ``(n,)``.

        Returns:
            ``(n,)`` float64 p-values in ``(0, 1]``.
        """
        s = _as_array(scores)
        if self.method == "gamma":
            from scipy import stats

            g = self.gamma or {}
            return stats.gamma.sf(s + g["shift"], g["shape"], loc=g["loc"], scale=g["scale"])
        ref = np.asarray(self.reference, dtype=np.float64)
        at_least = len(ref) - np.searchsorted(ref, s, side="left")
        return (1.0 + at_least) / (len(ref) + 1.0)

    def is_anomaly(self, scores: Any) -> np.ndarray:
        """``(n,)`` bool: anomaly score above the threshold."""
        return _as_array(scores) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for the run directory."""
        return {
            "method": self.method,
            "target_fpr": float(self.target_fpr),
            "threshold": float(self.threshold),
            "reference": [float(v) for v in self.reference],
            "gamma": None if self.gamma is None else {k: float(v) for k, v in self.gamma.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: Missing keys or an unknown method.
        """
        try:
            cal = cls(
                method=str(d["method"]),
                target_fpr=float(d["target_fpr"]),
                threshold=float(d["threshold"]),
                reference=sorted(float(v) for v in d["reference"]),
                gamma=None
                if d.get("gamma") is None
                else {k: float(v) for k, v in d["gamma"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid calibration record ({type(exc).__name__}: {exc})") from None
        if cal.method not in ("empirical", "gamma") or (cal.method == "gamma") != bool(cal.gamma):
            raise ConfigError(f"invalid calibration record: method {cal.method!r}")
        return cal


def _as_array(scores: Any) -> np.ndarray:
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().double().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def calibrate(
    normal_anomaly_scores: Any, target_fpr: float = 0.05, method: str = "empirical"
) -> Calibration:
    """Set the decision threshold from anomaly scores of held-out *normal* clips.

    ``empirical``: the threshold is the ``k``-th smallest reference score with
    ``k = ceil((1 - target_fpr) (n + 1))`` -- the ``1 - target_fpr`` quantile with the
    conformal finite-sample correction -- so at most ``target_fpr`` of the reference lies
    above it, the expected false-positive rate on new normal clips is ``<= target_fpr``, and
    ``is_anomaly(s)`` equals ``p_value(s) <= target_fpr``. With fewer than
    ``1 / target_fpr - 1`` clips this is impossible; the threshold is then the largest
    reference score (logged as a warning).

    ``gamma``: as the DCASE baselines, a gamma distribution (``scipy.stats.gamma.fit``, its
    location fixed at 0) is fitted to the scores shifted to be positive, ``s - min(ref) +
    margin`` (margin = 1 % of the reference range); the threshold is its ``1 - target_fpr``
    quantile shifted back, p-values its survival function. Smoother with few clips, but only
    as right as the gamma shape.

    Args:
        normal_anomaly_scores: ``(n,)`` anomaly scores (``-log_likelihood``) of normal clips
            the model was *not* trained on (e.g. the validation part), array-like.
        target_fpr: Share of normal clips allowed to be flagged, in ``(0, 1)``. Default: 0.05.
        method: ``"empirical"`` (default) or ``"gamma"``.

    Returns:
        The :class:`Calibration`.

    Raises:
        DataError: Fewer than ``MIN_REFERENCE`` (5) scores, non-finite scores, or (gamma) all
            scores equal.
        ConfigError: Unknown method or ``target_fpr`` outside ``(0, 1)``.
    """
    if method not in ("empirical", "gamma"):
        raise ConfigError(f"unknown calibration method {method!r}; choose empirical or gamma")
    if not 0.0 < target_fpr < 1.0:
        raise ConfigError(f"target_fpr must be between 0 and 1, got {target_fpr}")
    ref = np.sort(_as_array(normal_anomaly_scores))
    n = len(ref)
    if n < MIN_REFERENCE:
        raise DataError(
            f"calibration needs the scores of at least {MIN_REFERENCE} held-out normal clips, "
            f"got {n}; hold out more normal clips (data.validation_fraction)"
        )
    bad = int((~np.isfinite(ref)).sum())
    if bad:
        raise DataError(f"{bad} of {n} calibration scores are not finite (NaN or inf)")
    gamma = None
    if method == "empirical":
        rank = math.ceil((1.0 - target_fpr) * (n + 1) - 1e-9)
        if rank > n:
            logger.warning(
                "%d reference clips cannot give a false-positive rate of %.3g (needs >= %d); "
                "threshold = the largest reference score",
                n,
                target_fpr,
                math.ceil(1.0 / target_fpr) - 1,
            )
            rank = n
        threshold = float(ref[rank - 1])
    else:
        from scipy import stats

        spread = float(ref[-1] - ref[0])
        if spread <= 0:
            raise DataError("cannot fit a gamma: all calibration scores are equal")
        shift = 0.01 * spread - float(ref[0])
        shape, loc, scale = stats.gamma.fit(ref + shift, floc=0.0)
        gamma = {"shape": float(shape), "loc": float(loc), "scale": float(scale), "shift": shift}
        quantile = stats.gamma.ppf(1.0 - target_fpr, shape, loc=loc, scale=scale)
        threshold = float(quantile) - shift
    return Calibration(method, float(target_fpr), threshold, [float(v) for v in ref], gamma)
