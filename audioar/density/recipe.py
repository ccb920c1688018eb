"""Density recipes: ``[model]`` (``name`` + the family's Config fields), ``[train]``
(:class:`~audioar.config.recipes.TrainConfig` fields) and an optional ``[estimator]``
(``standardize``, ``validation_fraction``), read with ``tomllib``, plus dotted overrides
(``train.lr=1e-4``, ``model.hidden_features=[100,100]``).

Overrides are applied to the raw tables before anything is built, so ``model.name=made``
switches the family and the keys that follow are checked against its Config. TOML has no
null: an optional field is set to ``None`` with the string ``"none"``. Unknown sections and
keys are one :class:`~audioar.errors.ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioar.config.recipes import TrainConfig
from audioar.errors import ConfigError

__all__ = [
    "DensityRecipe",
    "density_families",
    "resolve_family",
    "load_density_recipe",
    "recipe_from_dict",
    "apply_density_overrides",
    "make_config",
]

_SECTIONS = ("model", "train", "estimator")
_ESTIMATOR_KEYS = {"standardize": bool, "validation_fraction": float}
_NONE_WORDS = ("none", "null")


def density_families() -> list[str]:
    """The registered families that model one vector per row (maf, made, nade, fvsbn)."""
    from audioar.models.build import FAMILIES, family

    return [name for name in FAMILIES if "vector" in family(name).inputs]


def resolve_family(name: str) -> Any:
    """The registered model class called ``name``, if it models tables (vectors).

    Raises:
        ConfigError: No such family, or one that does not take vectors.
    """
    if name not in density_families():
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(density_families())}")
    from audioar.models.build import family

    return family(name)


@dataclass
class DensityRecipe:
    """A resolved density recipe.

    Attributes:
        model: Family name (``"maf"``, ``"made"``, ``"nade"``, ``"fvsbn"``, ...).
        model_config: An instance of that family's ``Config``.
        train: How :func:`audioar.pipeline.train.fit` trains.
        standardize: Fit on z-scored columns (log-likelihoods stay in raw units).
        validation_fraction: Last share of the training rows held out for early stopping
            when the table has no validation split.
    """

    model: str = "maf"
    model_config: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    standardize: bool = True
    validation_fraction: float = 0.1

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The recipe as TOML-like tables (tuples as lists, ``None`` as ``"none"``)."""
        model = {"name": self.model, **_plain(dataclasses.asdict(self.model_config))}
        return {
            "model": model,
            "train": _plain(dataclasses.asdict(self.train)),
            "estimator": {
                "standardize": self.standardize,
                "validation_fraction": self.validation_fraction,
            },
        }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: list(v) if isinstance(v, tuple) else ("none" if v is None else v)
        for k, v in values.items()
    }


def load_density_recipe(
    path: str | Path | None, overrides: Sequence[str] = (), *, model: str | None = None
) -> DensityRecipe:
    """Read a recipe file (or start from the defaults) and apply dotted overrides.

    Args:
        path: A TOML recipe, or ``None`` for the defaults (MAF).
        overrides: ``"section.key=value"`` strings, values in TOML syntax (bare words are
            strings): ``train.lr=1e-4``, ``model.hidden_features=[100,100]``.
        model: A family name that replaces the recipe's ``model.name``.

    Raises:
        ConfigError: Unreadable TOML, unknown sections or keys, values of the wrong type.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such recipe file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if model is not None:
        raw.setdefault("model", {})["name"] = model
    raw = apply_density_overrides(raw, overrides)
    return recipe_from_dict(raw, source=str(path) if path is not None else None)


def apply_density_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw recipe tables with ``section.key=value`` overrides applied."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.lr=1e-4")
        out.setdefault(section, {})[name] = _parse_value(text.strip())
    return out


def _parse_value(text: str) -> Any:
    """A TOML value (``1e-4``, ``[100, 100]``, ``true``, ``"x"``) or, failing that, a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def recipe_from_dict(raw: dict[str, Any], *, source: str | None = None) -> DensityRecipe:
    """Build a :class:`DensityRecipe` from TOML-like tables.

    Raises:
        ConfigError: Unknown sections or keys (named), wrong types, unknown model.
    """
    where = f"{source}: " if source else ""
    unknown = [s for s in raw if s not in _SECTIONS]
    if unknown:
        raise ConfigError(
            f"{where}unknown section [{unknown[0]}]; a density recipe has [model], [train] "
            "and [estimator]"
        )
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}{section} must be a table of keys")
    model_values = dict(raw.get("model", {}))
    name = model_values.pop("name", "maf")
    if not isinstance(name, str):
        raise ConfigError(f"{where}model.name must be a string, got {name!r}")
    cls = resolve_family(name)
    model_config = make_config(cls.Config, model_values, f"{where}model", family=name)
    train = make_config(TrainConfig, raw.get("train", {}), f"{where}train")
    estimator = dict(raw.get("estimator", {}))
    for key in estimator:
        if key not in _ESTIMATOR_KEYS:
            raise ConfigError(
                f"{where}unknown key estimator.{key}; known: {', '.join(_ESTIMATOR_KEYS)}"
            )
    extra = {k: _coerce(v, _ESTIMATOR_KEYS[k], f"estimator.{k}") for k, v in estimator.items()}
    recipe = DensityRecipe(model=name, model_config=model_config, train=train, **extra)
    if not 0.0 <= recipe.validation_fraction < 1.0:
        raise ConfigError(
            f"{where}estimator.validation_fraction must be in [0, 1), "
            f"got {recipe.validation_fraction}"
        )
    return recipe


def make_config(cls: type, values: dict[str, Any], section: str, family: str = "") -> Any:
    """``cls(**values)`` with every value checked against the field's type.

    Args:
        cls: A dataclass (a family's ``Config``, ``TrainConfig``).
        values: Field values (lists for tuples, ``"none"`` for ``None``).
        section: How errors name the section (``"model"``, ``"recipe.toml: train"``).
        family: The model family, for the unknown-key message.

    Raises:
        ConfigError: An unknown key (named, with the known ones), a wrong type, or a value
            the dataclass refuses.
    """
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            owner = f"a setting of model {family!r}" if family else f"a {section} setting"
            raise ConfigError(
                f"unknown key {section}.{key}: not {owner} (known: {', '.join(fields)})"
            )
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (int, float, str, bool, tuples, optionals), or ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and isinstance(value, str) and value.lower() in _NONE_WORDS:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a {_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, list | tuple):
            inner = args[0] if args else Any
            return tuple(_coerce(v, inner, key) for v in value)
    elif tp is Any:
        return value
    else:  # other annotations (a Sequence of orders, ...): passed through
        return value
    raise ConfigError(f"{key}: {value!r} is not a {_name(tp)}")


def _name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "list of numbers"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))
