"""The sections of a run configuration: one dataclass per recipe table, with their checks.

``[data] [features] [model] [score] [train] [calibration]`` map one-to-one onto
:class:`DataConfig`, :class:`FeatureConfig`, :class:`ModelConfig`, :class:`ScoreConfig`,
:class:`TrainConfig` and :class:`CalibrationConfig`; :mod:`audioar.config.recipes` puts them
together as a ``RunConfig`` and reads and writes recipes. Each section checks its own
values when it is built (a one-line :class:`ConfigError` naming ``section.field``);
settings that only mean something together are checked where they are used.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from audioar.errors import ConfigError
from audioar.features.registry import FEATURIZERS
from audioar.features.stft import CMVN_MODES
from audioar.features.whole_window import MODES as WELCH_MODES
from audioar.models.build import FAMILIES
from audioar.models.build import family as model_family

__all__ = [
    "CHOICES",
    "aggregate_quantile",
    "DataConfig",
    "FeatureConfig",
    "ModelConfig",
    "ScoreConfig",
    "TrainConfig",
    "CalibrationConfig",
]

# Allowed values of the enumerated fields, "section.field" -> choices. Featurizer and model
# names come from their registries; a family's own settings are checked when it is built.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.condition": ("auto", "label", "group"),
    "features.name": tuple(FEATURIZERS),
    "features.mode": WELCH_MODES,
    "features.cmvn": CMVN_MODES,
    "model.name": tuple(FAMILIES),
    "score.method": (
        "auto",
        "raw",
        "per_step",
        "posterior",
        "likelihood_ratio",
        "complexity",
        "typicality",
    ),
    "score.background": ("none", "perturbed", "others", "both"),
    "train.device": ("auto", "cpu", "cuda"),
    "calibration.method": ("empirical", "gamma"),
}


def _choice(section: str, name: str, value: str) -> None:
    choices = CHOICES[f"{section}.{name}"]
    if value not in choices:
        raise ConfigError(
            f"{section}.{name}: unknown value {value!r}; choose one of {', '.join(choices)}"
        )


def _positive(section: str, name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{section}.{name}: must be a positive number, got {value!r}")


@dataclass
class DataConfig:
    """Which clips to train and evaluate on."""

    root: str | None = None  # data folder or CSV manifest; None -> the embedded synthetic set
    # the "normal" class the model is trained on; None: the one the layout implies (a DCASE
    # folder's "normal"), else "zero"
    target: str | None = None
    layout: str | None = None  # force a layout (audioar.data.discovery.LAYOUTS); None: detect it
    # what a class-conditional model is conditioned on: label (every class of the data set)
    # | group (the target's machine IDs / sections; each clip scored against its own) | auto
    # (group for a data set with groups, i.e. DCASE folders, else label)
    condition: str = "auto"
    split: str = (
        "official"  # official | random | loso | speaker:NAME (see audioar.data.splits.split)
    )
    validation_fraction: float = 0.15  # share of the training clips held out for early stopping
    compare: list[str] = field(
        default_factory=list
    )  # classes whose mean log-lik is logged per epoch
    seed: int = 0  # seed of the random splits

    def __post_init__(self) -> None:
        if self.target is not None and not self.target:
            raise ConfigError("data.target: must name a class")
        _choice("data", "condition", self.condition)
        if self.split not in ("official", "random", "loso") and not (
            self.split.startswith("speaker:") and len(self.split) > len("speaker:")
        ):
            raise ConfigError(
                f"data.split: unknown value {self.split!r}; "
                "choose one of official, random, loso, speaker:NAME"
            )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"data.validation_fraction: must be between 0 and 1, got {self.validation_fraction}"
            )


@dataclass
class FeatureConfig:
    """Which featurizer turns a waveform into the model's input."""

    name: str = "segments"  # segments (log-mel per time segment) | fft | stft | mulaw
    sample_rate: int = 8000  # Hz; clips are resampled to it
    n_fft: int = 512  # FFT size (segments, fft, stft): n_fft // 2 + 1 linear bins
    # frame step; None -> 128 (segments), n_fft // 2 (fft), n_fft // 4 (stft)
    hop_length: int | None = None
    n_mels: int | None = None  # mel bands (segments, stft); None -> 32 (segments), linear (stft)
    segments: int = 4  # segments only: equal-duration parts of each clip
    normalize: bool = True  # segments only: divide by the clip's mean power (level invariance)
    seconds: float | None = None  # pad/trim (trim only for segments) to this length; None keeps it
    mode: str = "welch"  # fft only: welch (averaged periodogram) | blog (the write-up's FFT)
    flatten: bool = False  # stft only: one (time * bins,) vector per clip (needs seconds)
    bits: int = 8  # mulaw only: 2**bits quantization levels
    # stft (per bin over the clip's frames) and segments (per mel band over its segments):
    # per-clip normalisation, speaker/channel level effects cancel: none | mean (subtract
    # the clip mean) | meanvar (stft only: and divide by the std)
    cmvn: str = "none"
    # stft frames for image models (pixelcnn): every clip padded/trimmed to this many frames
    # (padding never counts); None: the featurizer's fixed length, else the longest clip
    frames: int | None = None
    # timing normalised per clip (audioar.features.timing): drop leading/trailing frames
    # more than trim_db below the loudest (stft, segments), resample the rest to
    # stretch_frames frames (stft only; stft's trim_db needs it)
    trim_db: float | None = None
    stretch_frames: int | None = None
    n_mfcc: int | None = None  # segments, stft: MFCCs (DCT of the log-mel bands), this many
    # long recordings: cut every clip into windows of this many seconds (each window is a
    # training example; a clip's score aggregates its windows', score.aggregate); None: one
    # example per clip
    window_seconds: float | None = None
    hop_seconds: float | None = None  # seconds between window starts; None: window_seconds

    def __post_init__(self) -> None:
        _choice("features", "name", self.name)
        _choice("features", "mode", self.mode)
        _choice("features", "cmvn", self.cmvn)
        integers = ("sample_rate", "n_fft", "hop_length", "n_mels", "bits", "segments", "frames")
        for name in (*integers, "stretch_frames", "n_mfcc"):
            _positive("features", name, getattr(self, name), allow_none=True)
        _positive("features", "seconds", self.seconds, allow_none=True)
        _positive("features", "trim_db", self.trim_db, allow_none=True)
        _positive("features", "window_seconds", self.window_seconds, allow_none=True)
        _positive("features", "hop_seconds", self.hop_seconds, allow_none=True)
        if self.hop_seconds is not None and self.window_seconds is None:
            raise ConfigError("features.hop_seconds needs features.window_seconds")
        if self.window_seconds is not None and (self.hop_seconds or 0) > self.window_seconds:
            raise ConfigError(
                f"features.hop_seconds ({self.hop_seconds}) must be at most "
                f"features.window_seconds ({self.window_seconds})"
            )
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"features.bits: must be between 1 and 16, got {self.bits}")

    def featurizer_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the chosen featurizer (without ``name``).

        Returns:
            For ``segments``: ``sample_rate, n_fft, hop_length, n_mels, segments, normalize,
            seconds`` (+ ``cmvn``, ``trim_db`` and ``n_mfcc`` when set); for ``fft``: ``sample_rate,
            n_fft, seconds, mode, hop_length``; for
            ``stft``: ``sample_rate, n_fft, hop_length, n_mels, log=True, seconds,
            flatten`` (+ ``cmvn`` unless ``"none"``, ``trim_db``, ``stretch_frames`` and
            ``n_mfcc`` when set); for ``mulaw``: ``sample_rate, bits, seconds``.
            ``{"name": name, **kwargs}`` is what ``audioar.features.featurizer_from_config``
            takes.
        """
        if self.name not in ("stft", "segments") and self.trim_db is not None:
            raise ConfigError(
                f"features.trim_db is a stft / segments setting; features.name is {self.name!r}"
            )
        if self.name not in ("stft", "segments") and self.n_mfcc is not None:
            raise ConfigError(
                f"features.n_mfcc is a stft / segments setting; features.name is {self.name!r}"
            )
        if self.name != "stft" and self.stretch_frames is not None:
            raise ConfigError(
                f"features.stretch_frames is a stft setting; features.name is {self.name!r}"
            )
        if self.name == "segments":
            return {
                "sample_rate": self.sample_rate,
                "n_fft": self.n_fft,
                "hop_length": self.hop_length or 128,
                "n_mels": self.n_mels or 32,
                "segments": self.segments,
                "normalize": self.normalize,
                "seconds": self.seconds,
                # left out when off: the kwargs of older runs are unchanged
                **({"cmvn": self.cmvn} if self.cmvn != "none" else {}),
                **({"trim_db": self.trim_db} if self.trim_db is not None else {}),
                **({"n_mfcc": self.n_mfcc} if self.n_mfcc is not None else {}),
            }
        if self.name == "fft":
            keys = ("sample_rate", "n_fft", "seconds", "mode", "hop_length")
        elif self.name == "stft":
            keys = ("sample_rate", "n_fft", "hop_length", "n_mels", "seconds", "flatten")
        else:
            keys = ("sample_rate", "bits", "seconds")
        kwargs = {key: getattr(self, key) for key in keys}
        if self.name == "stft":
            kwargs["log"] = True
            # left out when off: the kwargs of older runs are unchanged
            if self.cmvn != "none":
                kwargs["cmvn"] = self.cmvn
            for key in ("trim_db", "stretch_frames", "n_mfcc"):
                if getattr(self, key) is not None:
                    kwargs[key] = getattr(self, key)
        return kwargs

    def featurizer_config(self) -> dict[str, Any]:
        """``{"name": name, **featurizer_kwargs()}``, the dict ``featurizer_from_config`` takes
        (with ``window_seconds`` and ``hop_seconds`` when windows are set: the featurizer is
        then applied to each window)."""
        config = {"name": self.name, **self.featurizer_kwargs()}
        if self.window_seconds is not None:
            if self.seconds is not None:
                raise ConfigError(
                    "features.seconds pads or trims whole clips; with features.window_seconds "
                    "every window has that length already: leave features.seconds unset"
                )
            config["window_seconds"] = self.window_seconds
            config["hop_seconds"] = self.hop_seconds or self.window_seconds
        return config


@dataclass
class ModelConfig:
    """Which density-model family, and its settings.

    ``settings`` is an instance of the family's own ``Config`` dataclass (see
    :data:`audioar.models.build.FAMILIES`); in a recipe the ``[model]`` table holds ``name``
    and that dataclass's fields side by side, e.g. ``name = "maf"`` and ``num_flows = 5``.
    """

    name: str = "maf"  # a registered family: maf | made | wavenet | ... (audioar.models.build)
    settings: Any = None  # the family's Config instance; None -> its defaults

    def __post_init__(self) -> None:
        cls = model_family(self.name)
        if self.settings is None:
            self.settings = cls.Config()
        elif not isinstance(self.settings, cls.Config):
            raise ConfigError(
                f"model {self.name!r} takes {cls.Config.__name__} settings, "
                f"got {type(self.settings).__name__}"
            )

    @property
    def family(self) -> Any:
        """The registered model class (its ``Config``, ``inputs`` and ``from_spec``)."""
        return model_family(self.name)


def aggregate_quantile(aggregate: str) -> float:
    """The quantile of windows' anomaly scores that ``score.aggregate`` names: ``max`` is 1,
    ``quantile:<q>`` is q; ``mean`` gives NaN (not a quantile).

    Raises:
        ConfigError: Another value, or q outside [0, 1].
    """
    if aggregate == "mean":
        return math.nan
    if aggregate == "max":
        return 1.0
    head, _, tail = aggregate.partition(":")
    try:
        q = float(tail) if head == "quantile" else math.nan
    except ValueError:
        q = math.nan
    if not 0.0 <= q <= 1.0:
        raise ConfigError(
            f"score.aggregate: unknown value {aggregate!r}; choose mean, max or quantile:<q> "
            "with q in [0, 1] (e.g. quantile:0.9)"
        )
    return q


@dataclass
class ScoreConfig:
    """Which per-clip score drives the anomaly score, the threshold and the headline metrics,
    and the extra models some scores need (see :mod:`audioar.pipeline.scoring`)."""

    # auto (posterior for a class-conditional model, else raw) | raw (log p(x | target)) |
    # per_step (raw / valid steps) | posterior (log p(x | target) - logsumexp_c log p(x | c),
    # uniform class prior; conditional models) | likelihood_ratio (raw minus a background
    # model's log-likelihood, Ren et al. 2019) | complexity (raw plus the clip's lossless
    # code length, Serra et al. 2020) | typicality (minus the distance of nats per step from
    # the training clips' mean, Nalisnick et al. 2019)
    method: str = "auto"
    # data of the likelihood ratio's background model: none | perturbed (the training clips
    # with a share of their values replaced by noise) | others (the other classes' clips) |
    # both; none with method=likelihood_ratio means perturbed
    background: str = "none"
    perturb_rate: float = 0.2  # share of feature values the perturbed background replaces
    # conditional models: add a class "_other" of perturbed clips of every class, so the
    # posterior has an explicit background class
    other_class: bool = False
    # windowed clips (features.window_seconds): how a clip's score comes from its windows'
    # anomaly scores: mean | max (the most unusual window) | quantile:<q> (e.g. quantile:0.9)
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        _choice("score", "method", self.method)
        aggregate_quantile(self.aggregate)  # checks the value
        _choice("score", "background", self.background)
        if not 0.0 < self.perturb_rate <= 1.0:
            raise ConfigError(f"score.perturb_rate: must be in (0, 1], got {self.perturb_rate}")

    @property
    def background_data(self) -> str:
        """The background model's data (``none`` when no background model is fitted)."""
        if self.method == "likelihood_ratio" and self.background == "none":
            return "perturbed"
        return self.background

    def resolve(self, conditional: bool) -> str:
        """The score actually used: ``method`` with ``auto`` resolved for the model kind.

        Raises:
            ConfigError: ``posterior`` (or ``other_class``) for a model that is not
                class-conditional.
        """
        if (self.method == "posterior" or self.other_class) and not conditional:
            raise ConfigError(
                "score.method=posterior and score.other_class need a class-conditional model; "
                "this one models the target class alone (use score.method=raw, per_step, "
                "likelihood_ratio, complexity or typicality)"
            )
        if self.method == "auto":
            return "posterior" if conditional else "raw"
        return self.method


@dataclass
class TrainConfig:
    """How :func:`audioar.pipeline.train.fit` trains."""

    epochs: int = 300  # most passes over the training clips
    batch_size: int = 100  # clips per optimizer step (the MAF paper's 100)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 1e-6  # Adam L2 penalty (MAF paper)
    patience: int = 30  # stop after this many epochs without a better validation NLL
    grad_clip: float | None = 5.0  # max gradient L2 norm; None: no clipping
    seed: int = 0  # seeds the torch RNG and the shuffling
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    amp: bool = True  # bfloat16 autocast, only ever on cuda
    max_minutes: float | None = None  # wall-clock cap; stops after the current epoch
    log_every: int = 1  # log an epoch line every this many epochs
    # stft frames of sequence and image models: random warps of every training clip, drawn
    # afresh each epoch (audioar.features.augment); 0 turns one off
    augment_warp: float = 0.0  # largest relative mel-axis (VTLP) warp, e.g. 0.1 -> x0.9..1.1
    augment_stretch: float = 0.0  # largest relative tempo change of the frame sequence

    def __post_init__(self) -> None:
        _choice("train", "device", self.device)
        for name in ("epochs", "batch_size", "lr", "patience", "log_every"):
            _positive("train", name, getattr(self, name))
        for name in ("augment_warp", "augment_stretch"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"train.{name}: must be in [0, 1), got {value}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"train.weight_decay: must be >= 0, got {self.weight_decay}")
        _positive("train", "grad_clip", self.grad_clip, allow_none=True)
        _positive("train", "max_minutes", self.max_minutes, allow_none=True)


@dataclass
class CalibrationConfig:
    """How the decision threshold is set from held-out normal clips."""

    target_fpr: float = 0.05  # share of normal clips allowed to be flagged
    method: str = "empirical"  # empirical (conformal quantile) | gamma (fitted gamma tail)

    def __post_init__(self) -> None:
        _choice("calibration", "method", self.method)
        if not 0.0 < self.target_fpr < 1.0:
            raise ConfigError(
                f"calibration.target_fpr: must be between 0 and 1, got {self.target_fpr}"
            )
