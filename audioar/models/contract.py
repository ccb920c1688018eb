"""The contract every density-model family implements, so one pipeline drives them all.

A family is one model file (an ``nn.Module`` class) and one line in
:mod:`audioar.models.build`. The pipeline never asks which family it holds; it reads what
the model declares:

* ``Config``: the dataclass of the family's ``[model]`` settings (a comment per field). It
  holds only what a user chooses; sizes that come from the data (feature count, channels,
  code levels, number of classes) arrive in an :class:`InputSpec`.
* ``inputs``: the input layouts the family accepts (:data:`INPUT_KINDS`).
* ``from_spec(cfg, spec)``: build the untrained model for data described by ``spec``.
* ``conditional`` (instance attribute): ``True`` when ``context`` is a class index
  ``(batch,)`` LongTensor and the model can be scored under every class; such a model is
  trained on every class of the training split, a one-class model on the target only.
* ``log_prob(x, context=None) -> (batch,)`` in nats; sequence models also take
  ``lengths`` ``(batch,)`` (valid steps; padded steps never count).
* ``log_prob_steps(x, context=None) -> (batch, steps...)`` where the model has steps
  (features, frames, samples, pixels): the per-step terms, summing to ``log_prob``.
* ``sample(n, context=None)``.
* optionally ``presets``: ``{features.name: ["section.key=value", ...]}``, overrides that
  size the family for those features when the user gives no recipe.

Shapes per layout (batch first): ``vector`` ``(batch, features)``; ``sequence`` codes
``(batch, time)`` (LongTensor) or frames ``(batch, time, bins)``, padded, with ``lengths``;
``image`` ``(batch, channels, height, width)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from audioar.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["INPUT_KINDS", "InputSpec", "DensityModel"]

#: The input layouts a family can accept.
INPUT_KINDS = ("vector", "sequence", "image")


@dataclass(frozen=True)
class InputSpec:
    """What one clip's features look like, as the pipeline hands them to ``from_spec``.

    Attributes:
        kind: ``"vector"`` ``(features,)``, ``"sequence"`` ``(time,)`` codes or
            ``(time, bins)`` frames of variable length, or ``"image"``
            ``(channels, height, width)``.
        shape: One clip's shape without the batch dimension; ``None`` for the variable
            time axis of a sequence (e.g. ``(None, 32)`` for 32-band frames).
        levels: Values of a discrete input (``256`` for 8-bit μ-law codes, ``2`` for
            binary pixels); ``0`` for real-valued features.
        classes: Classes a conditional model may condition on (the training split's class
            count); ``0`` when there is nothing to condition on.

    Example:
        >>> InputSpec("vector", (128,)).size
        128
    """

    kind: str
    shape: tuple[int | None, ...]
    levels: int = 0
    classes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ConfigError(
                f"unknown input kind {self.kind!r}; expected one of {', '.join(INPUT_KINDS)}"
            )

    @property
    def size(self) -> int:
        """Values per step: the feature count of a vector, the bins of a frame (1 for codes),
        channels x height x width of an image."""
        fixed = [d for d in self.shape if d is not None]
        if self.kind == "sequence":
            return int(fixed[-1]) if len(self.shape) > 1 else 1
        out = 1
        for d in fixed:
            out *= int(d)
        return out

    @property
    def step_values(self) -> int:
        """Values per step, the unit of "nats per step": a whole vector (one step), one
        frame (1 for codes), one image column (channels x height)."""
        if self.kind == "image":
            return int(self.shape[0] or 1) * int(self.shape[1] or 1)
        return self.size


@runtime_checkable
class DensityModel(Protocol):
    """What the pipeline calls on every family (see the module notes for the shapes)."""

    Config: ClassVar[type]
    inputs: ClassVar[tuple[str, ...]]
    conditional: bool

    @classmethod
    def from_spec(cls, cfg: Any, spec: InputSpec) -> DensityModel:
        """The untrained model for data described by ``spec``."""
        ...

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(batch,)`` log-likelihoods in nats."""
        ...

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples."""
        ...
