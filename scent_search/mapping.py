"""Untrusted mappings (TOML tables, JSON, `--set KEY=VALUE`) -> frozen dataclasses.

`from_mapping` is the one gate: it refuses unknown keys and values of the wrong type with a `ConfigError`
naming the (dotted) key, then builds the dataclass, whose own checks run in `__post_init__`. Floats must be
finite: TOML accepts `inf` and `nan`, and no setting of scent-search means either.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping

from scent_search.errors import ConfigError


def parse_literal(raw: str) -> Any:
    """A value typed on a command line: a TOML literal (`512`, `true`, `[128, 32]`, `"grid"`), else JSON, else the
    plain string (`grid`)."""
    import json
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw


def require(cond: bool, key: str, message: str) -> None:
    """The check of a frozen config's `__post_init__`: a ConfigError about `key` unless `cond`."""
    if not cond:
        raise ConfigError(key, message)


def check_type(value: Any, annotation: Any) -> bool:
    """Whether a TOML/JSON value fits a dataclass field annotation (an int is accepted for a float)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(check_type(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(check_type(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, Mapping)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def type_name(annotation: Any) -> str:
    if annotation is float:
        return "finite float"
    name = getattr(annotation, "__name__", None) if typing.get_origin(annotation) is None else None
    return name or str(annotation).replace("typing.", "").replace("float", "finite float")


def from_mapping(cls: type, data: Mapping[str, Any], source: str | None = None, prefix: str = ""):
    """Build the frozen dataclass `cls` from `data`, refusing unknown keys and wrong types.

    `prefix` is prepended to key names in messages (e.g. "model." for a [model] table of a study spec).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or cls.__name__, f"must be a table, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key (known: {', '.join(sorted(names))})", source)
    for key, value in data.items():
        if not check_type(value, hints[key]):
            raise ConfigError(prefix + key, f"expected {type_name(hints[key])}, got {value!r}", source)
    try:
        return cls(**data)
    except ConfigError as e:
        raise e.at(prefix=prefix, source=source) from e


__all__ = ["check_type", "from_mapping", "require", "type_name"]
