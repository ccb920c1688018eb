"""Run configuration: one dataclass per part, TOML recipes and dotted overrides.

A recipe (``recipes/*.toml``) has the sections ``[data] [features] [model] [train]
[score] [calibration]``, each mapping one-to-one onto a dataclass of
:mod:`audioar.config.sections` (re-exported here). A run directory stores the
resolved config as :func:`run_config_to_dict` gives it. Overrides use dotted keys::

    cfg = load_recipe("recipes/zero_maf.toml")
    cfg = apply_overrides(cfg, ["train.lr=1e-4", "model.hidden_features=[256,256]"])

TOML has no null: an optional field is either left out (its default) or set to the string
``"none"``, which means ``None``.
"""

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioar.config.sections import (
    CHOICES,
    CalibrationConfig,
    DataConfig,
    FeatureConfig,
    ModelConfig,
    ScoreConfig,
    TrainConfig,
)
from audioar.config.values import coerce, field_types, parse_text
from audioar.errors import ConfigError
from audioar.models.build import family as model_family

__all__ = [
    "FORMAT_VERSION",
    "CHOICES",
    "DataConfig",
    "FeatureConfig",
    "ModelConfig",
    "ScoreConfig",
    "TrainConfig",
    "CalibrationConfig",
    "RunConfig",
    "run_config_to_dict",
    "run_config_from_dict",
    "load_recipe",
    "apply_overrides",
    "preset_overrides",
    "resolve_run_config",
    "MACHINE_PRESETS",
]

FORMAT_VERSION = 2  # version of the run-directory layout and of the stored config


@dataclass
class RunConfig:
    """Everything that defines a run; stored resolved in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "features": FeatureConfig,
    "model": ModelConfig,
    "score": ScoreConfig,
    "train": TrainConfig,
    "calibration": CalibrationConfig,
}


# ----------------------------------------------------------------------------- conversions


def run_config_to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """A JSON-safe dict ``{section: {field: value}}`` (tuples become lists).

    The ``model`` section holds ``name`` and the family's settings side by side.

    Args:
        cfg: The run configuration.

    Returns:
        The nested dict; :func:`run_config_from_dict` turns it back into ``cfg``.
    """
    out: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        part = getattr(cfg, section)
        values = dataclasses.asdict(part.settings if section == "model" else part)
        if section == "model":
            values = {"name": part.name, **values}
        out[section] = {k: list(v) if isinstance(v, tuple | list) else v for k, v in values.items()}
    return out


def _section_fields(section: str, model_name: str | None = None) -> dict[str, Any]:
    """Field name -> type of one section; for ``model``, ``name`` and the family's fields."""
    if section != "model":
        return field_types(_SECTIONS[section])
    return {"name": str, **field_types(model_family(model_name or "maf").Config)}


def _known_keys(section: str, fields: dict[str, Any], model: str) -> str:
    """``the keys of model maf are name, num_flows, ...`` (no brackets: messages are shown
    through rich, which would take ``[model]`` for markup)."""
    where = f"model {model}" if section == "model" else section
    return f"the keys of {where} are {', '.join(fields)}"


def _unknown_keys(section: str, keys: list[str], fields: dict[str, Any], model: str) -> str:
    return (
        f"unknown key(s) {', '.join(f'{section}.{k}' for k in keys)}; "
        f"{_known_keys(section, fields, model)}"
    )


def _make_section(section: str, values: dict[str, Any]) -> Any:
    """The section's dataclass from typed ``values`` (missing fields keep their defaults)."""
    if section != "model":
        return _SECTIONS[section](**values)
    values = dict(values)
    name = values.pop("name", "maf")
    return ModelConfig(name, model_family(name).Config(**values))


def run_config_from_dict(d: dict[str, Any], *, source: str | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from ``{section: {field: value}}``; missing keys keep defaults.

    Args:
        d: The nested dict (from JSON or TOML). The string ``"none"`` sets an optional field
            to ``None``. The ``model`` table's keys are ``name`` and the fields of that
            family's ``Config``.
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
        for section in _SECTIONS:
            values = d.get(section, {})
            if not isinstance(values, dict):
                raise ConfigError(f"[{section}] must be a table of settings, got {values!r}")
            name = values.get("name", "maf") if section == "model" else None
            if name is not None and not isinstance(name, str):
                raise ConfigError(f"model.name: expected a string, got {name!r}")
            fields = _section_fields(section, name)
            bad = [key for key in values if key not in fields]
            if bad:
                raise ConfigError(_unknown_keys(section, bad, fields, str(name)))
            typed = {
                key: coerce(value, fields[key], f"{section}.{key}") for key, value in values.items()
            }
            parts[section] = _make_section(section, typed)
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
    written ``[256,256]``, ``(256, 256)`` or ``256,256`` (``[]`` is empty). A
    ``model.name`` override is applied first: another family starts from its own defaults,
    and the other ``model.*`` overrides are that family's settings.

    Args:
        cfg: The config to start from (not modified).
        overrides: Items like ``"train.lr=1e-4"``, ``"model.hidden_features=[256,256]"``,
            ``"data.compare=one,two"``.

    Returns:
        The new, validated config.

    Raises:
        ConfigError: A malformed item, unknown key, or a value that does not parse (named).
    """
    parsed = []
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
        parsed.append((item, key, section, name, raw.strip()))
    parts = {section: getattr(cfg, section) for section in _SECTIONS}
    names = [raw for _, _, section, name, raw in parsed if (section, name) == ("model", "name")]
    if names and names[-1] != parts["model"].name:
        parts["model"] = ModelConfig(parse_text(names[-1], str, "model.name"))
    for item, key, section, name, raw in parsed:
        if (section, name) == ("model", "name"):
            continue
        fields = _section_fields(section, parts["model"].name)
        if name not in fields:
            known = _known_keys(section, fields, parts["model"].name)
            raise ConfigError(f"override {item!r}: unknown key {key!r}; {known}")
        value = parse_text(raw, fields[name], key)
        if section == "model":
            model = parts["model"]
            settings = dataclasses.replace(model.settings, **{name: value})
            parts["model"] = ModelConfig(model.name, settings)
        else:
            parts[section] = dataclasses.replace(parts[section], **{name: value})
    return RunConfig(**parts)


#: What ``audioar fit`` applies on a DCASE machine folder (after the family's presets): the
#: machine sound at 16 kHz in windows, each summarised by its 64-band log-mel spectrum
#: (not level-normalised: a louder machine is news), each clip scored by ``-log p(x | its
#: own machine ID)`` (the class posterior saturates when IDs differ much; measured in
#: benchmarks/dcase.py, see the docs' results page).
MACHINE_PRESETS: tuple[str, ...] = (
    "features.sample_rate=16000",
    "features.window_seconds=1.0",
    "features.hop_seconds=0.5",
    "features.trim_db=none",
    "features.n_mfcc=none",
    "features.n_mels=64",
    "features.segments=1",
    "features.normalize=false",
    "score.method=raw",
)


def preset_overrides(overrides: list[str] | tuple[str, ...], *, machine: bool = False) -> list[str]:
    """The presets of the family and features that ``overrides`` choose (on the defaults),
    to apply before them: what ``audioar fit`` does without a recipe.

    Args:
        overrides: Items as :func:`apply_overrides` takes, e.g. ``["model.name=pixelcnn",
            "features.name=stft"]``.
        machine: The data is a DCASE machine folder: add :data:`MACHINE_PRESETS` (for
            ``segments`` features, the default).

    Returns:
        The family's ``presets[features.name]`` (see :mod:`audioar.models.contract`), or
        ``[]``, then the machine presets.
    """
    cfg = apply_overrides(RunConfig(), overrides)
    chosen = list(getattr(cfg.model.family, "presets", {}).get(cfg.features.name, []))
    if machine and cfg.features.name == "segments":
        chosen += MACHINE_PRESETS
    return chosen


def resolve_run_config(
    recipe: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    machine: bool = False,
) -> RunConfig:
    """The run configuration as ``audioar fit`` resolves it: the recipe (or the defaults),
    then ``overrides`` (last wins). Without a recipe the chosen family's presets for the
    chosen features come first (e.g. the MAF's class-conditional MFCC segments), then the
    machine presets when ``machine`` (a DCASE folder); ``overrides`` still win.

    Args:
        recipe: A TOML recipe, or None.
        overrides: Dotted ``section.field=value`` items.
        machine: The data is a DCASE machine folder (:data:`MACHINE_PRESETS`).

    Raises:
        ConfigError: A bad recipe or override (named).
    """
    chosen = list(overrides)
    if recipe is not None:
        return apply_overrides(load_recipe(recipe), chosen)
    return apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=machine), *chosen])
