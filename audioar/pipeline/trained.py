"""What a fit produces and scoring consumes: the trained model with its featurizer and
calibration (:class:`TrainedModel`) and the fit's summary (:class:`FitSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audioar.config.recipes import RunConfig
from audioar.features import Featurizer
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.pipeline.calibration import Calibration
from audioar.pipeline.train import FitResult

__all__ = ["TrainedModel", "FitSummary"]


@dataclass
class TrainedModel:
    """A fitted model with everything needed to score new clips.

    Attributes:
        model: The density model over (standardised) features; ``model.log_prob(x, labels,
            lengths) -> (batch,)`` nats of the raw features.
        featurizer: The featurizer it was trained on.
        calibration: Threshold and p-values from held-out normal clips.
        config: The resolved run configuration.
        spec: What one clip's features look like as the model takes them.
        classes: The class names in the order of the model's class indices (a
            class-conditional model), or ``[target]`` for a one-class model.
        background: The likelihood ratio's background model (``score.background``), or None.
        typical: Mean nats per step of the target's training clips (the typicality score's
            reference).
        window_calibration: A windowed run's calibration on single windows of held-out
            normal clips (what ``listen`` flags a window with; a clip's score averages its
            windows and varies less), or None.
    """

    model: Standardized
    featurizer: Featurizer
    calibration: Calibration
    config: RunConfig
    spec: InputSpec
    classes: list[str]
    background: Standardized | None = None
    typical: float | None = None
    window_calibration: Calibration | None = None

    @property
    def conditional(self) -> bool:
        """Whether the model scores a clip under every class and so has a class posterior:
        a class-conditional model fitted on at least two classes (on a data set of the
        normal class alone it is a one-class model, scored as one)."""
        return self.model.has_posterior

    @property
    def by_group(self) -> bool:
        """Whether the model is conditioned on groups (machine IDs / sections,
        ``data.condition = group``): each clip is scored against its own group."""
        return self.config.data.condition == "group" and self.model.conditional

    @property
    def dims(self) -> int:
        """Values per step: feature dimensions of a vector, bins of a frame (1 for codes),
        pixels of an image column."""
        return self.spec.step_values

    @property
    def score(self) -> str:
        """The score that drives the anomaly score (``score.method`` resolved)."""
        return self.config.score.resolve(self.conditional)


@dataclass
class FitSummary:
    """What a fit reports besides the model."""

    result: FitResult
    n_train: int
    n_validation: int
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    run_dir: Path | None = None
