"""Values of configuration fields: the field types of a dataclass, and TOML/JSON values or
command-line text checked and converted to them, with one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from audioar.errors import ConfigError

__all__ = ["NONE_WORDS", "field_types", "coerce", "parse_text"]

#: Words that set an optional field to None (TOML has no null).
NONE_WORDS = ("none", "null")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def type_name(tp: Any) -> str:
    inner, optional = split_optional(tp)
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        name = f"a list of {typing.get_args(inner)[0].__name__}"
    else:
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[inner]
    return name + (" or none" if optional else "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a JSON/TOML value against a field type, converting lists to tuples etc."""
    inner, optional = split_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in NONE_WORDS):
        if optional:
            return None
        raise ConfigError(f"{key}: expected {type_name(tp)}, got none")
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        element = typing.get_args(inner)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
        try:
            items = [coerce(v, element, key) for v in value]
        except ConfigError:
            raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}") from None
        return tuple(items) if origin is tuple else items
    ok = (
        (inner is bool and isinstance(value, bool))
        or (inner is int and isinstance(value, int) and not isinstance(value, bool))
        or (inner is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (inner is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    return float(value) if inner is float else value


def parse_text(raw: str, tp: Any, key: str) -> Any:
    """Parse the text of an override to the field's type."""
    inner, optional = split_optional(tp)
    if optional and raw.lower() in NONE_WORDS:
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
            parsed = [parse_text(item, element, key) for item in items]
        except ConfigError:
            raise ConfigError(f"{key}: expected {type_name(tp)}, got {raw!r}") from None
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
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {raw!r}") from None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    return raw
