"""The one scoring path: a trained model's per-clip scores, for every family.

Sign convention (used everywhere in audioar):

* a **log-likelihood** (nats) is what a model's ``log_prob`` returns: *higher = more normal*;
* an **anomaly score** is minus the chosen per-clip score: *higher = more unusual*.

Every clip gets ``log p(x | c)`` under every class of a class-conditional model (one
batched pass), or ``log p(x)`` under a one-class model, and from these the scores:

* ``log_likelihood`` (``raw``): ``log p(x | target)`` in nats;
* ``nats_per_step`` (``per_step``): the raw score divided by the clip's valid steps (frames,
  samples or image columns), comparable across clip lengths; models with steps only;
* ``log_posterior`` (``posterior``): ``log p(x | target) - logsumexp_c log p(x | c)``, the
  log class posterior under a *uniform* class prior (``<= 0``); conditional models only
  (with ``score.other_class`` one of the classes is ``_other``, perturbed clips);
* ``log_likelihood_ratio`` (``likelihood_ratio``): ``log p(x | target) - log p_0(x)``
  with ``p_0`` the run's background model (Ren et al. 2019; runs with
  ``score.background``);
* ``complexity_corrected`` (``complexity``): the log-likelihood of the quantised features
  plus their lossless code length (Serrà et al. 2020, :mod:`audioar.pipeline.complexity`);
* ``typicality`` (``typicality``): ``-|nats_per_step - m|`` with ``m`` the mean over the
  target's training clips (Nalisnick et al. 2019, for single clips).

``score.method`` picks the one behind ``anomaly_score``, the threshold and the headline
metrics; the others are reported beside it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from audioar.errors import ConfigError
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.pipeline.batches import evaluating, stack_padded
from audioar.pipeline.complexity import (
    QUANT_LEVELS,
    QUANT_RANGE,
    code_lengths,
    quantised_log_likelihood,
)
from audioar.pipeline.inputs import arrange
from audioar.pipeline.trained import TrainedModel
from audioar.pipeline.windows import aggregate, expand, is_windowed

__all__ = [
    "ALL_CLASSES_ROWS",
    "SCORE_COLUMN",
    "class_log_likelihoods",
    "fast_code_lengths",
    "ClipScores",
    "clip_scores",
    "score_features",
    "WindowedScores",
    "own_classes",
    "score_batch_size",
]

#: Per-clip scores by ``score.method`` name -> column name.
SCORE_COLUMN: dict[str, str] = {
    "raw": "log_likelihood",
    "per_step": "nats_per_step",
    "posterior": "log_posterior",
    "likelihood_ratio": "log_likelihood_ratio",
    "complexity": "complexity_corrected",
    "typicality": "typicality",
}


def score_batch_size(spec: InputSpec) -> int:
    """Clips per scoring pass (bounds memory, not speed): codes are long sequences."""
    if spec.kind == "vector":
        return 1024
    if spec.kind == "sequence" and spec.levels:
        return 16
    return 128


#: Most rows (clips x classes) of one pass that scores a vector model's clips under every
#: class at once (:func:`class_log_likelihoods`): a MAF of 5 flows with 2 x 512 hidden
#: units (the MAF class's own default) keeps some 4.5 KB of activations a row, ~37 MB a
#: pass; the default detector (2 x 128 hidden units) roughly a third of that. Bigger
#: passes make bigger products: the default's 3,000 FSDD clips in batches of 512 took
#: 0.34 s with 4,096 rows a pass, 0.30 s with 8,192 (2 cores).
ALL_CLASSES_ROWS = 8192


@torch.no_grad()
def class_log_likelihoods(
    model: Standardized,
    items: Sequence[Tensor],
    lengths: Sequence[int],
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    batched: bool = True,
) -> Tensor:
    """``log p(x | c)`` of every clip under every class (conditional) or ``log p(x)``.

    Eval mode (batch norm then uses its running statistics, so a clip's score does not
    depend on the other clips of its batch); the model's mode is restored. Clips are batched
    in order of length so that padded batches waste little.

    A conditional model over vectors scores its clips under every class in one pass over
    ``(clips x classes)`` rows (each clip repeated once per class, class-major; at most
    :data:`ALL_CLASSES_ROWS` rows a pass) instead of a pass per class: ten times fewer
    calls, which is what costs when there are few clips or threads sleep between calls (the
    FSDD detector with the former 2 x 512 MAF, 10 classes, 2 cores: 1 clip 14 -> 4 ms, 8
    clips 27 -> 4 ms; 3,000 clips 0.84 -> 0.67 s with passive OpenMP waiting, the same
    0.63 s with spinning threads, where the products decide). The plain reference
    (``batched=False``) is :meth:`Standardized.log_prob_all_classes`, a pass per class; both
    give the same numbers to the products' float rounding (float32: about 1e-6 relative, as
    the reference itself gives for a clip in batches of other sizes; float64: 1e-15).

    Args:
        model: The wrapped density model.
        items: Model inputs, one per clip (:func:`audioar.pipeline.inputs.arrange`).
        lengths: Valid steps per clip.
        batch_size: Clips per pass.
        device: Where to compute; default the model's device.
        batched: Score vectors under every class in one pass (default True); False: the
            reference, a pass per class.

    Returns:
        ``(n, classes)`` float64 on the CPU, in input order (``(n, 1)`` for a one-class
        model); padded steps never count.
    """
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    width = max(model.classes, 1)
    every_class = batched and model.conditional and model.spec.kind == "vector"
    if every_class:
        batch_size = max(1, min(batch_size, ALL_CLASSES_ROWS // width))
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    result = torch.empty(len(items), width, dtype=torch.float64)
    with evaluating(model, device):
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = stack_padded([items[i] for i in index]).to(device)
            steps = torch.tensor([lengths[i] for i in index], device=device)
            if every_class:
                ll = _every_class_at_once(model, x, steps, width)
            elif model.conditional:
                ll = model.log_prob_all_classes(x, steps)
            else:
                ll = model.log_prob(x, None, steps).unsqueeze(1)
            result[torch.tensor(index)] = ll.double().cpu()
    return result


def _every_class_at_once(model: Standardized, x: Tensor, steps: Tensor, classes: int) -> Tensor:
    """``(batch, classes)`` ``log p(x | c)`` in one pass over ``(classes x batch)`` rows."""
    n = x.shape[0]
    rows = x.repeat(classes, *([1] * (x.dim() - 1)))  # class-major: row c * n + i
    labels = torch.arange(classes, device=x.device).repeat_interleave(n)
    return model.log_prob(rows, labels, steps.repeat(classes)).view(classes, n).t()


def fast_code_lengths(
    model: Standardized, items: Sequence[Tensor], lengths: Sequence[int]
) -> np.ndarray:
    """:func:`audioar.pipeline.complexity.code_lengths` (the plain reference), faster: the
    same numbers.

    Vectors are standardised and quantised in one batch, and each clip's bytes go through
    zlib (level 9) with the smallest window that still reaches across the whole clip:
    deflate then finds the same matches and writes the same number of bytes (only the
    header's window field differs), while setting up a window sized to the clip instead of
    32 KB (3,000 FSDD clips of 32 bytes: 0.11 -> 0.02 s). Other inputs go to the reference.
    """
    if model.spec.kind != "vector" or model.spec.levels or not items:
        return code_lengths(model, items, lengths)
    with torch.no_grad():
        z = model.standardize(torch.stack(list(items)))
    bins = torch.clamp(((z + QUANT_RANGE) / _QUANT_BIN).floor(), 0, QUANT_LEVELS - 1)
    codes = bins.to(torch.uint8).numpy()
    wbits = _zlib_window_bits(codes.shape[1])
    nats = 8 * math.log(2)
    return np.array(
        [nats * len(zlib.compress(row.tobytes(), 9, wbits)) for row in codes], dtype=np.float64
    )


_QUANT_BIN = 2 * QUANT_RANGE / QUANT_LEVELS  # as audioar.pipeline.complexity quantises
_ZLIB_LOOKAHEAD = 262  # deflate's MIN_LOOKAHEAD: a window of 2**w reaches 2**w - 262 back


def _zlib_window_bits(size: int) -> int:
    """The smallest zlib window (``wbits`` 9-15) whose matches reach across ``size`` bytes."""
    for wbits in range(9, 15):
        if size <= (1 << wbits) - _ZLIB_LOOKAHEAD:
            return wbits
    return 15


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` of an ``(n, k)`` array, stable (rows of ``-inf`` give
    ``-inf``). As ``scipy.special.logsumexp(a, axis=1)``, whose import (some 0.25 s: it
    loads numpy.f2py) every command would pay at start-up."""
    top = a.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - top).sum(axis=1)) + top[:, 0]


@dataclass
class ClipScores:
    """Per-class log-likelihoods of clips and the scores derived from them.

    Attributes:
        per_class: ``(n, classes)`` ``log p(x | c)`` in nats (``(n, 1)``, the target alone,
            for a one-class model).
        steps: ``(n,)`` valid steps per clip (1 for a vector).
        classes: Class names in column order.
        target: The target class.
        dims: Values per step (features of a vector, bins of a frame, 1 for codes).
        conditional: Whether the columns are the classes of a conditional model.
        has_steps: Whether the model has steps (sequences, images): then ``per_step`` exists.
        background: ``(n,)`` the background model's log-likelihood, or None.
        quantised: ``(n,)`` the log-likelihood of the quantised features, or None.
        code_length: ``(n,)`` their lossless code length in nats, or None.
        typical: Mean nats per step of the target's training clips, or None.
        own: ``(n,)`` for a model conditioned on groups (machine IDs, sections): the
            column of the class each clip is scored against (its own group), ``-1`` where
            the clip's group is unknown (then its most likely class); None: every clip is
            scored against ``target``.
    """

    per_class: np.ndarray
    steps: np.ndarray
    classes: list[str]
    target: str
    dims: int
    conditional: bool
    has_steps: bool
    background: np.ndarray | None = None
    quantised: np.ndarray | None = None
    code_length: np.ndarray | None = None
    typical: float | None = None
    own: np.ndarray | None = None

    @property
    def scored_against(self) -> np.ndarray:
        """``(n,)`` the column each clip is scored against: ``target``'s, or each clip's own
        class (``own``; the most likely class where that is ``-1``)."""
        n = len(self.per_class)
        if self.own is None:
            return np.full(n, self.classes.index(self.target), dtype=np.int64)
        own = np.asarray(self.own, dtype=np.int64)
        if n and (own < 0).any():
            own = np.where(own < 0, self.per_class.argmax(axis=1), own)
        return own

    @property
    def log_likelihood(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target)`` (``log p(x | own class)`` with ``own``)."""
        return self.per_class[np.arange(len(self.per_class)), self.scored_against]

    @property
    def nats_per_step(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target)`` per valid step."""
        return self.log_likelihood / self.steps

    @property
    def nats_per_dim(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target)`` per value (steps x values per step)."""
        return self.log_likelihood / (self.steps * self.dims)

    @property
    def log_posterior(self) -> np.ndarray:
        """``(n,)`` ``log p(target | x)`` under a uniform class prior (``<= 0``).

        Computed as ``-log(1 + q / p)`` with ``p = p(x | target)`` and ``q = sum of p(x |
        c)`` over the other classes, so a confident clip keeps a tiny negative value
        (``-q / p``, down to about ``1e-308``) instead of rounding to 0: clips of the target
        stay ranked among themselves, and a threshold calibrated on them stays meaningful.
        """
        if self.per_class.shape[1] < 2:
            return np.zeros(len(self.per_class))
        others = self.per_class.copy()
        others[np.arange(len(others)), self.scored_against] = -np.inf  # adds nothing below
        log_others = _logsumexp_rows(others)
        return -np.logaddexp(0.0, log_others - self.log_likelihood)

    @property
    def log_likelihood_ratio(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target) - log p_0(x)`` (the background model's ``p_0``)."""
        if self.background is None:
            raise ConfigError("this run has no background model (score.background)")
        return self.log_likelihood - self.background

    @property
    def complexity_corrected(self) -> np.ndarray:
        """``(n,)`` quantised log-likelihood plus the lossless code length, nats."""
        if self.quantised is None or self.code_length is None:
            raise ConfigError("no code lengths were computed for these clips")
        return self.quantised + self.code_length

    @property
    def typicality(self) -> np.ndarray:
        """``(n,)`` minus the distance of nats per step from the training mean (``<= 0``)."""
        if self.typical is None:
            raise ConfigError("this run stores no training mean of nats per step")
        return -np.abs(self.nats_per_step - self.typical)

    @property
    def available(self) -> tuple[str, ...]:
        """The score names this model has, in report order."""
        names = ["raw"]
        if self.has_steps:
            names.append("per_step")
        if self.conditional:
            names.append("posterior")
        if self.background is not None:
            names.append("likelihood_ratio")
        if self.code_length is not None:
            names.append("complexity")
        if self.typical is not None:
            names.append("typicality")
        return tuple(names)

    def score(self, name: str) -> np.ndarray:
        """The score named ``raw`` | ``per_step`` | ``posterior`` (or its column name).

        Raises:
            ConfigError: An unknown score, or one this model does not have.
        """
        by_column = {column: key for key, column in SCORE_COLUMN.items()}
        key = by_column.get(name, name)
        if key not in self.available:
            raise ConfigError(
                f"score {name!r} is not available for this model; choose one of "
                f"{', '.join(self.available)}"
            )
        return getattr(self, SCORE_COLUMN[key])

    def columns(self) -> dict[str, np.ndarray]:
        """The score table's columns: every available score, ``nats_per_dim`` and, for a
        conditional model, ``ll_<class>`` (``log p(x | class)``)."""
        out = {SCORE_COLUMN[name]: self.score(name) for name in self.available}
        out["nats_per_dim"] = self.nats_per_dim
        if self.conditional:
            for i, label in enumerate(self.classes):
                out[f"ll_{label}"] = self.per_class[:, i]
        return out


def clip_scores(
    model: Standardized,
    spec: InputSpec,
    classes: Sequence[str],
    target: str,
    features: Sequence[Tensor],
    *,
    background: Standardized | None = None,
    typical: float | None = None,
    own: Sequence[int] | None = None,
) -> ClipScores:
    """Score clips given as featurizer output (one tensor per clip).

    Args:
        model: The wrapped model.
        spec: Its input spec.
        classes: Class names of the model's class indices (``[target]`` for one-class).
        target: The target class.
        features: One featurizer tensor per clip.
        background: The likelihood ratio's background model, or None.
        typical: Mean nats per step of the target's training clips, or None.
        own: Per clip, the class index it is scored against (a model conditioned on
            groups; ``-1``: the most likely class), or None: ``target``.
    """
    items, lengths = arrange(features, spec)
    batch = score_batch_size(spec)
    per_class = class_log_likelihoods(model, items, lengths, batch_size=batch)
    steps = np.asarray(lengths, dtype=np.float64)
    scores = ClipScores(
        per_class=per_class.numpy(),
        steps=steps,
        classes=list(classes),
        target=target,
        dims=spec.step_values,
        conditional=model.has_posterior,
        has_steps=spec.kind != "vector",
        typical=typical,
        own=None if own is None else np.asarray(own, dtype=np.int64),
    )
    if background is not None:
        scores.background = class_log_likelihoods(background, items, lengths, batch_size=batch)[
            :, 0
        ].numpy()
    scores.code_length = fast_code_lengths(model, items, lengths)
    scores.quantised = quantised_log_likelihood(
        model, scores.log_likelihood, steps, spec.step_values
    )
    return scores


def own_classes(
    trained: TrainedModel, groups: Sequence[str | None] | None, n: int
) -> np.ndarray | None:
    """The class each of ``n`` clips is scored against, for a run conditioned on groups.

    Args:
        trained: The run.
        groups: Each clip's group (machine ID / section), None where unknown; or None.
        n: Clips.

    Returns:
        ``(n,)`` column indices (``-1``: unknown group, the clip's most likely class), or
        None for a run that scores every clip against its target class.
    """
    if not trained.by_group:
        return None
    index = {c: i for i, c in enumerate(trained.classes)}
    if groups is None:
        return np.full(n, -1, dtype=np.int64)
    return np.asarray([index.get(g, -1) if g is not None else -1 for g in groups], np.int64)


def score_features(
    trained: TrainedModel,
    features: Sequence[Tensor],
    groups: Sequence[str | None] | None = None,
) -> ClipScores | WindowedScores:
    """Score clips given as featurizer output (one tensor per clip) with a trained run.

    A run conditioned on groups scores each clip against its own group (``groups``; an
    unknown or missing group: the clip's most likely one). A windowed run scores every
    window and aggregates per clip (:class:`audioar.pipeline.windows.WindowedScores`). With no
    clips the result has no rows but every column (for table headers).

    Args:
        trained: The run.
        features: One featurizer tensor per clip.
        groups: Each clip's group, or None.
    """
    own = own_classes(trained, groups, len(features))
    if is_windowed(trained.featurizer):
        items, owner = expand(features)
        window_own = None if own is None else own[owner]
        return WindowedScores(
            _score_items(trained, items, window_own), owner, len(features),
            trained.config.score.aggregate,
        )  # fmt: skip
    return _score_items(trained, features, own)


def _score_items(
    trained: TrainedModel, features: Sequence[Tensor], own: np.ndarray | None
) -> ClipScores:
    if not features:
        empty = np.zeros(0)
        return ClipScores(
            per_class=np.zeros((0, len(trained.classes))),
            steps=empty,
            classes=list(trained.classes),
            target=trained.config.data.target,
            dims=trained.dims,
            conditional=trained.conditional,
            has_steps=trained.spec.kind != "vector",
            background=empty if trained.background is not None else None,
            quantised=empty,
            code_length=empty,
            typical=trained.typical,
            own=None if own is None else np.zeros(0, dtype=np.int64),
        )
    return clip_scores(
        trained.model,
        trained.spec,
        trained.classes,
        trained.config.data.target,
        features,
        background=trained.background,
        typical=trained.typical,
        own=own,
    )


@dataclass
class WindowedScores:
    """Per-clip scores of windowed clips: every score of :class:`ClipScores`, aggregated
    over each clip's windows (``score.aggregate``); the same interface as ClipScores.

    Attributes:
        windows: The scores of every window.
        owner: ``(windows,)`` the clip of each window.
        n: Clips.
        how: The aggregation (``mean`` | ``max`` | ``quantile:<q>``).
    """

    windows: ClipScores
    owner: np.ndarray
    n: int
    how: str = "mean"

    def _agg(self, values: np.ndarray) -> np.ndarray:
        return aggregate(values, self.owner, self.n, self.how)

    @property
    def classes(self) -> list[str]:
        """Class names in column order."""
        return self.windows.classes

    @property
    def target(self) -> str:
        """The target class."""
        return self.windows.target

    @property
    def conditional(self) -> bool:
        """Whether the columns are the classes of a conditional model."""
        return self.windows.conditional

    @property
    def available(self) -> tuple[str, ...]:
        """The score names this model has."""
        return self.windows.available

    @property
    def counts(self) -> np.ndarray:
        """``(n,)`` windows per clip."""
        return np.bincount(self.owner, minlength=self.n)

    @property
    def log_likelihood(self) -> np.ndarray:
        """``(n,)`` the windows' ``log p(x | class)`` aggregated per clip."""
        return self._agg(self.windows.log_likelihood)

    @property
    def nats_per_dim(self) -> np.ndarray:
        """``(n,)`` the windows' nats per value aggregated per clip."""
        return self._agg(self.windows.nats_per_dim)

    def score(self, name: str) -> np.ndarray:
        """``(n,)`` the score ``name`` of every window, aggregated per clip."""
        return self._agg(self.windows.score(name))

    def columns(self) -> dict[str, np.ndarray]:
        """The score table's columns (each aggregated per clip) and ``windows``."""
        out = {name: self._agg(values) for name, values in self.windows.columns().items()}
        out["windows"] = self.counts.astype(np.float64)
        return out

    def window_values(self, name: str) -> list[np.ndarray]:
        """Per clip, the score ``name`` of each of its windows in time order (its trace)."""
        values = self.windows.score(name)
        return [values[self.owner == i] for i in range(self.n)]
