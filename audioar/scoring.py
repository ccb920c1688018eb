"""Scores from a density model: log-likelihoods, per-step aggregation and calibration.

Sign convention (used everywhere in audioar):

* a **log-likelihood** (nats) is what a model's ``log_prob`` returns: *higher = more normal*;
* an **anomaly score** is its negation, ``-log_likelihood``: *higher = more unusual*.

:func:`aggregate` turns per-step (WaveNet) or per-frame (STFT) log-likelihoods into one
log-likelihood-like number per clip; negate it for the anomaly score. A :class:`Calibration`
works on anomaly scores: its threshold and p-values come from held-out *normal* clips.
"""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from audioar.errors import ConfigError, DataError, TrainingError

__all__ = [
    "as_dataset",
    "resolve_device",
    "batch_to_device",
    "log_likelihoods",
    "anomaly_scores",
    "mask_from_lengths",
    "aggregate",
    "AGGREGATIONS",
    "Calibration",
    "calibrate",
    "MIN_REFERENCE",
]

logger = logging.getLogger(__name__)

AGGREGATIONS = ("sum", "mean", "max", "topk", "quantile")
MIN_REFERENCE = 5  # fewest held-out normal scores a calibration accepts


# ----------------------------------------------------------------------------- data and device


class _Tupled(Dataset):
    """Wraps a dataset whose items are single tensors so that every item is a tuple."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        item = self.dataset[index]
        return tuple(item) if isinstance(item, tuple | list) else (item,)


def as_dataset(data: Dataset | Tensor | Sequence[Tensor]) -> Dataset:
    """Normalize training/scoring data to a ``Dataset`` whose items are tuples.

    Args:
        data: A ``torch.utils.data.Dataset`` (items: a tensor or a tuple of tensors), a
            tensor ``(n, ...)`` (items ``(x,)``), or a tuple/list of tensors sharing their
            first dimension (items ``(x, context, ...)``).

    Returns:
        A dataset whose items are tuples: the positional arguments of ``model.log_prob``.

    Raises:
        DataError: Tensors of different lengths, or something that is not data.
    """
    if isinstance(data, Tensor):
        return TensorDataset(data)
    if isinstance(data, tuple | list) and data and all(isinstance(t, Tensor) for t in data):
        lengths = {len(t) for t in data}
        if len(lengths) != 1:
            raise DataError(
                f"tensors of different lengths {sorted(lengths)} cannot form one data set"
            )
        return TensorDataset(*data)
    if isinstance(data, Dataset):
        return _Tupled(data)
    raise DataError(
        f"expected a Dataset, a tensor or a tuple of tensors, got {type(data).__name__}"
    )


def resolve_device(
    device: str | torch.device | None, model: nn.Module | None = None
) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; ``None`` -> the model's device (or cpu).

    Raises:
        ConfigError: ``"cuda"`` was asked for but no CUDA device is available.
    """
    if device is None:
        param = next(iter(model.parameters()), None) if model is not None else None
        return param.device if param is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is available; use cpu")
    return device


def batch_to_device(batch: Any, device: torch.device) -> tuple:
    """A batch (a tensor, or a tuple/list whose tensors move) as a tuple on ``device``."""
    if isinstance(batch, Tensor):
        batch = (batch,)
    return tuple(t.to(device, non_blocking=True) if isinstance(t, Tensor) else t for t in batch)


@torch.no_grad()
def log_likelihoods(
    model: nn.Module,
    data: Dataset | Tensor | Sequence[Tensor],
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    collate_fn: Callable[[list], Any] | None = None,
) -> Tensor:
    """Log-likelihood of every item under ``model``, in eval mode, batched, without gradients.

    Eval mode matters: batch norm then uses its running statistics, so a clip's score does
    not depend on the other clips in its batch. The model's train/eval mode is restored.

    Args:
        model: Any module with ``log_prob(*item) -> (batch,)`` in nats.
        data: As for :func:`as_dataset`; each batch tuple is passed as ``model.log_prob(*batch)``.
        batch_size: Items per forward pass. Default: 512.
        device: Where to compute; ``None`` (default) is the model's device, ``"auto"`` cuda
            when available.
        collate_fn: Builds a batch from a list of items (e.g. padding variable-length codes);
            ``None`` uses PyTorch's default stacking.

    Returns:
        ``(n,)`` float32 log-likelihoods (nats) on the CPU, in data order.

    Raises:
        TrainingError: ``log_prob`` returned something other than one value per item.
    """
    dataset = as_dataset(data)
    device = resolve_device(device, model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    was_training = model.training
    model.to(device)
    model.eval()
    out = []
    try:
        for batch in loader:
            batch = batch_to_device(batch, device)
            ll = model.log_prob(*batch)
            if ll.dim() != 1 or len(ll) != len(batch[0]):
                raise TrainingError(
                    f"model.log_prob returned shape {tuple(ll.shape)}; "
                    f"expected ({len(batch[0])},), one log-likelihood per item"
                )
            out.append(ll.detach().float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def anomaly_scores(log_likelihood: Tensor) -> Tensor:
    """Anomaly score = ``-log_likelihood`` (higher = more unusual). Shape is kept."""
    return -log_likelihood


# ----------------------------------------------------------------------------- aggregation


def mask_from_lengths(lengths: Tensor, time: int | None = None) -> Tensor:
    """Boolean ``(batch, time)`` mask, True on the first ``lengths[i]`` steps of row ``i``.

    Args:
        lengths: ``(batch,)`` integer valid lengths.
        time: Padded length; default ``lengths.max()``.
    """
    time = int(lengths.max()) if time is None else time
    return torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]


def aggregate(
    step_log_likelihoods: Tensor,
    mask: Tensor | None = None,
    how: str = "sum",
    *,
    k: int = 10,
    q: float = 0.05,
) -> Tensor:
    """Turn per-step log-likelihoods into one log-likelihood-like value per clip.

    Higher stays *more normal* for every choice, so ``-aggregate(...)`` is the anomaly score:

    * ``sum``: total log-likelihood of the valid steps (the clip's log-likelihood when the
      steps are the model's autoregressive factors);
    * ``mean``: mean per valid step (nats per step; compares clips of different lengths);
    * ``max``: named for the anomaly score it gives -- the log-likelihood of the *most
      surprising* step, i.e. the minimum per-step log-likelihood;
    * ``topk``: mean log-likelihood of the ``k`` most surprising (lowest) valid steps (all
      valid steps when a clip has fewer than ``k``);
    * ``quantile``: the ``q``-quantile of the valid per-step log-likelihoods counted from the
      low end (``q=0.05``: 5 % of steps are more surprising), linear interpolation as
      ``torch.quantile``.

    Args:
        step_log_likelihoods: ``(batch, time)`` per-step or per-frame log-likelihoods (nats).
        mask: ``(batch, time)`` bool, True on valid steps; ``None`` (default): all valid.
            Padded steps never count, whatever value they hold.
        how: One of ``sum, mean, max, topk, quantile``. Default: ``"sum"``.
        k: Steps averaged by ``topk``. Default: 10.
        q: Quantile for ``quantile``, in ``[0, 1]``. Default: 0.05.

    Returns:
        ``(batch,)`` aggregated log-likelihoods.

    Raises:
        ConfigError: Unknown ``how`` or bad ``k``/``q``.
        DataError: Wrong shapes, or a clip with no valid step.
    """
    x = step_log_likelihoods
    if how not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
    if x.dim() != 2:
        raise DataError(f"step log-likelihoods must be (batch, time), got shape {tuple(x.shape)}")
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    if mask.shape != x.shape:
        raise DataError(f"mask shape {tuple(mask.shape)} differs from {tuple(x.shape)}")
    mask = mask.to(torch.bool)
    counts = mask.sum(dim=1)
    if x.shape[0] and int(counts.min()) == 0:
        row = int(torch.nonzero(counts == 0)[0])
        raise DataError(f"clip {row} has no valid step to aggregate")
    if how == "sum":
        return torch.where(mask, x, 0).sum(dim=1)
    if how == "mean":
        return torch.where(mask, x, 0).sum(dim=1) / counts
    if how == "max":
        return torch.where(mask, x, math.inf).amin(dim=1)
    # topk and quantile work on each row's valid values sorted ascending (padding -> +inf last).
    ordered = torch.where(mask, x, math.inf).sort(dim=1).values
    if how == "topk":
        if k < 1:
            raise ConfigError(f"topk needs k >= 1, got {k}")
        kk = min(k, x.shape[1])
        taken = torch.clamp(counts, max=kk)
        keep = torch.arange(kk, device=x.device)[None, :] < taken[:, None]
        return torch.where(keep, ordered[:, :kk], 0).sum(dim=1) / taken
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"quantile needs 0 <= q <= 1, got {q}")
    position = q * (counts - 1).to(x.dtype)
    low = position.floor().long()
    high = position.ceil().long()
    frac = position - low.to(x.dtype)
    lo_val = ordered.gather(1, low[:, None])[:, 0]
    hi_val = ordered.gather(1, high[:, None])[:, 0]
    return lo_val + frac * (hi_val - lo_val)


# ----------------------------------------------------------------------------- calibration


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
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
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
