"""Run configuration: one dataclass per part, TOML recipes and dotted overrides.

A recipe (``recipes/*.toml``) has the sections ``[data] [features] [model] [train]
[calibration]``, each mapping one-to-one onto a dataclass below. A run directory stores the
resolved config as :func:`run_config_to_dict` gives it. Overrides use dotted keys::

    cfg = load_recipe("recipes/zero_maf.toml")
    cfg = apply_overrides(cfg, ["train.lr=1e-4", "model.hidden_features=[256,256]"])

TOML has no null: an optional field is either left out (its default) or set to the string
``"none"``, which means ``None``.
"""

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioar.errors import ConfigError

__all__ = [
    "FORMAT_VERSION",
    "CHOICES",
    "DataConfig",
    "FeatureConfig",
    "ModelConfig",
    "TrainConfig",
    "CalibrationConfig",
    "RunConfig",
    "run_config_to_dict",
    "run_config_from_dict",
    "load_recipe",
    "apply_overrides",
]

FORMAT_VERSION = 1  # version of the run-directory layout and of the stored config

# Allowed values of the enumerated fields, "section.field" -> choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "features.name": ("segments", "fft", "stft", "mulaw"),
    "features.mode": ("welch", "blog"),
    "features.cmvn": ("none", "mean", "meanvar"),
    "model.name": ("maf", "made", "wavenet"),
    "model.activation": ("tanh", "relu", "elu", "gelu", "silu"),
    "model.permutation": ("reverse", "random", "none"),
    "model.base": ("normal", "mog"),
    "model.output": ("gaussian", "mog", "bernoulli", "categorical"),
    "model.wavenet_output": ("categorical", "gaussian", "logistic_mixture"),
    "model.score": ("auto", "posterior", "per_step", "raw"),
    "train.device": ("auto", "cpu", "cuda"),
    "calibration.method": ("empirical", "gamma"),
}

_NONE_WORDS = ("none", "null")


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
    target: str = "zero"  # the "normal" class the model is trained on
    split: str = "official"  # official | random | loso | speaker:NAME (see audioar.data.split)
    validation_fraction: float = 0.15  # share of the training clips held out for early stopping
    compare: list[str] = field(
        default_factory=list
    )  # classes whose mean log-lik is logged per epoch
    seed: int = 0  # seed of the random splits

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError("data.target: must name a class")
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
    # stft only: per-clip normalisation of each bin over the clip's frames (speaker/channel
    # level effects cancel): none | mean (subtract the clip mean) | meanvar (and divide by std)
    cmvn: str = "none"

    def __post_init__(self) -> None:
        _choice("features", "name", self.name)
        _choice("features", "mode", self.mode)
        _choice("features", "cmvn", self.cmvn)
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "bits", "segments"):
            _positive("features", name, getattr(self, name), allow_none=True)
        _positive("features", "seconds", self.seconds, allow_none=True)
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"features.bits: must be between 1 and 16, got {self.bits}")

    def featurizer_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the chosen featurizer (without ``name``).

        Returns:
            For ``segments``: ``sample_rate, n_fft, hop_length, n_mels, segments, normalize,
            seconds``; for ``fft``: ``sample_rate, n_fft, seconds, mode, hop_length``; for
            ``stft``: ``sample_rate, n_fft, hop_length, n_mels, log=True, seconds,
            flatten`` (+ ``cmvn`` unless ``"none"``); for ``mulaw``: ``sample_rate, bits, seconds``.
            ``{"name": name, **kwargs}`` is what ``audioar.features.featurizer_from_config``
            takes.
        """
        if self.name == "segments":
            return {
                "sample_rate": self.sample_rate,
                "n_fft": self.n_fft,
                "hop_length": self.hop_length or 128,
                "n_mels": self.n_mels or 32,
                "segments": self.segments,
                "normalize": self.normalize,
                "seconds": self.seconds,
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
            if self.cmvn != "none":  # left out when off: the kwargs of older runs are unchanged
                kwargs["cmvn"] = self.cmvn
        return kwargs

    def featurizer_config(self) -> dict[str, Any]:
        """``{"name": name, **featurizer_kwargs()}``, the dict ``featurizer_from_config`` takes."""
        return {"name": self.name, **self.featurizer_kwargs()}


@dataclass
class ModelConfig:
    """Which density model, and its size."""

    name: str = "maf"  # maf | made | wavenet
    # MAF (and MADE: hidden_features)
    num_flows: int = 5  # MADE layers stacked in the flow
    hidden_features: tuple[int, ...] = (512, 512)  # hidden units of each MADE
    activation: str = "tanh"  # hidden nonlinearity of each MADE: tanh | relu | elu | gelu | silu
    batch_norm: bool = True  # batch-norm bijection between flows (MAF paper)
    permutation: str = "reverse"  # feature order between flows: reverse | random | none
    base: str = "normal"  # base distribution of the flow: normal | mog (MAF MoG)
    # MADE
    output: str = "gaussian"  # conditional per feature: gaussian | mog | bernoulli | categorical
    components: int = 10  # mixture components (MADE output = "mog", MAF base = "mog")
    # WaveNet
    residual_channels: int = 64  # channels of the residual stream
    skip_channels: int = 128  # channels of the skip connections
    kernel_size: int = 2  # causal convolution width
    dilation_cycles: int = 2  # repeats of the 1, 2, 4, ... max_dilation stack
    max_dilation: int = 512  # largest dilation of a cycle
    wavenet_output: str = "categorical"  # categorical (mu-law codes) | gaussian | logistic_mixture
    # Which per-clip score drives anomaly_score, calibration and the headline metrics:
    # auto (posterior for wavenet, raw for maf/made) | posterior (log p(x|target) minus
    # logsumexp over classes, uniform prior) | per_step (raw / valid steps) | raw (log p(x|target))
    score: str = "auto"

    def __post_init__(self) -> None:
        for name in ("name", "activation", "permutation", "base", "output", "wavenet_output"):
            _choice("model", name, getattr(self, name))
        _choice("model", "score", self.score)
        for name in ("num_flows", "components", "residual_channels", "skip_channels"):
            _positive("model", name, getattr(self, name))
        for name in ("kernel_size", "dilation_cycles", "max_dilation"):
            _positive("model", name, getattr(self, name))
        if not self.hidden_features or any(h <= 0 for h in self.hidden_features):
            raise ConfigError(
                f"model.hidden_features: must be positive sizes, got {list(self.hidden_features)}"
            )

    def model_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the chosen model taken from this config.

        Data-dependent arguments (``features``, ``context_features``, ``classes``,
        ``quantization``) are added by the caller.

        Returns:
            For ``maf``: ``num_flows, hidden_features, activation, batch_norm, permutation,
            base`` (+ ``components`` for a ``mog`` base); for ``made``: ``hidden_features,
            output, activation`` (+ ``components`` for ``mog``; ``categories`` for
            ``categorical`` comes from the data); for ``wavenet``: ``residual_channels,
            skip_channels, kernel_size, dilation_cycles, max_dilation, output``.
        """
        if self.name == "maf":
            keys = ("num_flows", "hidden_features", "activation", "batch_norm", "permutation")
            kwargs = {key: getattr(self, key) for key in keys}
            kwargs["base"] = self.base
            if self.base == "mog":
                kwargs["components"] = self.components
        elif self.name == "made":
            keys = ("hidden_features", "output", "activation")
            kwargs = {key: getattr(self, key) for key in keys}
            if self.output == "mog":
                kwargs["components"] = self.components
        else:
            keys = (
                "residual_channels",
                "skip_channels",
                "kernel_size",
                "dilation_cycles",
                "max_dilation",
            )
            kwargs = {key: getattr(self, key) for key in keys}
            kwargs["output"] = self.wavenet_output
        if "hidden_features" in kwargs:
            kwargs["hidden_features"] = tuple(kwargs["hidden_features"])
        return kwargs

    @property
    def resolved_score(self) -> str:
        """The score actually used: ``score``, with ``auto`` resolved per model
        (``posterior`` for wavenet, ``raw`` for maf and made)."""
        if self.score != "auto":
            return self.score
        return "posterior" if self.name == "wavenet" else "raw"


@dataclass
class TrainConfig:
    """How :func:`audioar.train.fit` trains."""

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
    # wavenet over stft frames only: random warps of every training clip, drawn afresh each
    # epoch (audioar.models.wavenet_augment); 0 turns one off
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


@dataclass
class RunConfig:
    """Everything that defines a run; stored resolved in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "features": FeatureConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "calibration": CalibrationConfig,
}


# ----------------------------------------------------------------------------- conversions


def run_config_to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """A JSON-safe dict ``{section: {field: value}}`` (tuples become lists).

    Args:
        cfg: The run configuration.

    Returns:
        The nested dict; :func:`run_config_from_dict` turns it back into ``cfg``.
    """
    out: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        part = dataclasses.asdict(getattr(cfg, section))
        out[section] = {k: list(v) if isinstance(v, tuple | list) else v for k, v in part.items()}
    return out


def run_config_from_dict(d: dict[str, Any], *, source: str | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from ``{section: {field: value}}``; missing keys keep defaults.

    Args:
        d: The nested dict (from JSON or TOML). The string ``"none"`` sets an optional field
            to ``None``.
        source: Named at the start of error messages (e.g. the recipe's path).

    Returns:
        The validated config.

    Raises:
        ConfigError: An unknown section or key (named), a value of the wrong type, or a value
            out of range.
    """
    prefix = f"{source}: " if source else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix}a run config must be a table of sections, got {d!r}")
    unknown = [key for key in d if key not in _SECTIONS]
    if unknown:
        raise ConfigError(
            f"{prefix}unknown section(s) {', '.join(map(str, unknown))}; "
            f"expected {', '.join(_SECTIONS)}"
        )
    parts: dict[str, Any] = {}
    try:
        for section, cls in _SECTIONS.items():
            values = d.get(section, {})
            if not isinstance(values, dict):
                raise ConfigError(f"[{section}] must be a table of settings, got {values!r}")
            hints = _field_types(cls)
            bad = [key for key in values if key not in hints]
            if bad:
                raise ConfigError(
                    f"unknown key(s) {', '.join(f'{section}.{k}' for k in bad)}; "
                    f"[{section}] has {', '.join(hints)}"
                )
            kwargs = {
                key: _coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()
            }
            parts[section] = cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    return RunConfig(**parts)


def load_recipe(path: str | Path) -> RunConfig:
    """Read a TOML recipe whose sections map one-to-one onto the config dataclasses.

    Args:
        path: The ``.toml`` file.

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: Missing or unreadable file, invalid TOML, or an unknown/ill-typed key
            (the message names the file and the key).

    Example:
        >>> cfg = load_recipe("recipes/zero_maf.toml")  # doctest: +SKIP
        >>> cfg.model.num_flows  # doctest: +SKIP
        5
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    return run_config_from_dict(table, source=str(path))


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Return a copy of ``cfg`` with dotted ``section.field=value`` overrides applied.

    Values are parsed to the field's type: ``int``, ``float`` (``1e-4``), ``bool``
    (true/false/yes/no/1/0), ``str``, ``none``/``null`` for optional fields, and sequences
    written ``[256,256]``, ``(256, 256)`` or ``256,256`` (``[]`` is empty).

    Args:
        cfg: The config to start from (not modified).
        overrides: Items like ``"train.lr=1e-4"``, ``"model.hidden_features=[256,256]"``,
            ``"data.compare=one,two"``.

    Returns:
        The new, validated config.

    Raises:
        ConfigError: A malformed item, unknown key, or a value that does not parse (named).
    """
    parts = {section: getattr(cfg, section) for section in _SECTIONS}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ConfigError(
                f"override {item!r}: expected section.field=value, e.g. train.lr=1e-4"
            )
        if section not in _SECTIONS:
            raise ConfigError(
                f"override {item!r}: unknown section {section!r}; expected {', '.join(_SECTIONS)}"
            )
        hints = _field_types(_SECTIONS[section])
        if name not in hints:
            raise ConfigError(
                f"override {item!r}: unknown key {key!r}; [{section}] has {', '.join(hints)}"
            )
        value = _parse_text(raw.strip(), hints[name], key)
        parts[section] = dataclasses.replace(parts[section], **{name: value})
    return RunConfig(**parts)


# ----------------------------------------------------------------------------- typing helpers


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _type_name(tp: Any) -> str:
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        name = f"a list of {typing.get_args(inner)[0].__name__}"
    else:
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[inner]
    return name + (" or none" if optional else "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a JSON/TOML value against a field type, converting lists to tuples etc."""
    inner, optional = _split_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in _NONE_WORDS):
        if optional:
            return None
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got none")
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        element = typing.get_args(inner)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        try:
            items = [_coerce(v, element, key) for v in value]
        except ConfigError:
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}") from None
        return tuple(items) if origin is tuple else items
    ok = (
        (inner is bool and isinstance(value, bool))
        or (inner is int and isinstance(value, int) and not isinstance(value, bool))
        or (inner is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (inner is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if inner is float else value


def _parse_text(raw: str, tp: Any, key: str) -> Any:
    """Parse the text of an override to the field's type."""
    inner, optional = _split_optional(tp)
    if optional and raw.lower() in _NONE_WORDS:
        return None
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        body = raw
        if body[:1] + body[-1:] in ("[]", "()"):
            body = body[1:-1]
        items = [part.strip().strip("\"'") for part in body.split(",")] if body.strip() else []
        if any(not item for item in items):
            raise ConfigError(f"{key}: empty item in {raw!r}")
        element = typing.get_args(inner)[0]
        try:
            parsed = [_parse_text(item, element, key) for item in items]
        except ConfigError:
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {raw!r}") from None
        return tuple(parsed) if origin is tuple else parsed
    try:
        if inner is bool:
            words = {"true": True, "yes": True, "on": True, "1": True}
            words |= {"false": False, "no": False, "off": False, "0": False}
            return words[raw.lower()]
        if inner is int:
            return int(raw)
        if inner is float:
            return float(raw)
    except (KeyError, ValueError):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {raw!r}") from None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    return raw
