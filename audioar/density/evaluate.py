"""Test log-likelihoods in the MAF paper's format: mean ± 2 standard errors, in nats.

The error bar is the authors' (``collect_results.py``): twice the standard deviation of
the per-row log-likelihoods (``ddof=0``) over the square root of the row count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audioar.errors import DataError

__all__ = ["LogLikelihoodSummary", "summarize"]


@dataclass(frozen=True)
class LogLikelihoodSummary:
    """Mean log-likelihood of a table with its error bar.

    Attributes:
        mean: Mean log-likelihood per row, nats.
        error: Two standard errors of that mean, nats.
        rows: Rows scored.
        features: Columns per row (for nats per dimension).
        part: Which rows (``"test"``, ``"all rows"``, ...).
    """

    mean: float
    error: float
    rows: int
    features: int
    part: str = "test"

    @property
    def per_dim(self) -> float:
        """Mean log-likelihood per dimension, nats."""
        return self.mean / self.features

    @property
    def per_dim_error(self) -> float:
        """Two standard errors of :attr:`per_dim`."""
        return self.error / self.features

    def format(self) -> str:
        """``"10.08 ± 0.02 nats (1.260 ± 0.003 nats/dim, 105,206 test rows)"``."""
        return (
            f"{self.mean:.2f} ± {self.error:.2f} nats ({self.per_dim:.3f} ± "
            f"{self.per_dim_error:.3f} nats/dim, {self.rows:,} {self.part} rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields plus the per-dimension figures."""
        return {**asdict(self), "per_dim": self.per_dim, "per_dim_error": self.per_dim_error}


def summarize(log_likelihoods: Any, features: int, part: str = "test") -> LogLikelihoodSummary:
    """Mean ± 2 standard errors of per-row log-likelihoods.

    Args:
        log_likelihoods: ``(rows,)`` nats.
        features: Columns per row.
        part: A name for the rows, default ``"test"``.

    Raises:
        DataError: No rows, or a non-finite log-likelihood (a row the model finds impossible).

    Example:
        >>> summarize([1.0, 3.0], features=2).format()
        '2.00 ± 1.41 nats (1.000 ± 0.707 nats/dim, 2 test rows)'
    """
    ll = np.asarray(log_likelihoods, dtype=np.float64).reshape(-1)
    if ll.size == 0:
        raise DataError(f"no {part} rows to score")
    if not np.isfinite(ll).all():
        bad = int(np.argmax(~np.isfinite(ll)))
        raise DataError(f"{part} row {bad + 1} has log-likelihood {ll[bad]}")
    error = 2.0 * float(ll.std()) / math.sqrt(ll.size)
    return LogLikelihoodSummary(float(ll.mean()), error, int(ll.size), int(features), part)
