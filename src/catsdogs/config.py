"""Typed, checked views of `params.yaml`.

Reads a params file (YAML) and turns each stage's section into a frozen dataclass. Unknown
keys and ill-typed values fail here, at the edge, with the key's dotted name, so nothing
deeper down has to second-guess its inputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A params section has an unknown key or a value of the wrong type."""


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict; a missing or non-mapping file is an error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file '{path}' does not exist")
    with path.open(encoding="utf-8") as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict):
        raise ConfigError(f"params file '{path}' must hold a mapping, not {type(params).__name__}")
    return params


def section(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Return `params[name]`, failing with the name when it is missing or not a mapping."""
    value = params.get(name)
    if not isinstance(value, Mapping):
        raise ConfigError(f"params key '{name}' must be a mapping of settings, got {value!r}")
    return value


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _conforms(value: Any, annotation: Any) -> bool:
    """Whether a YAML-loaded value fits a type hint (int for float is fine; bool for int is not)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_conforms(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _coerce(value: Any, annotation: Any) -> Any:
    """Normalise a conforming value: lists become tuples (frozen), ints become floats."""
    if annotation is float and isinstance(value, int):
        return float(value)
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType) and float in typing.get_args(annotation):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    return value


def check_settings(
    settings: Mapping[str, Any], hints: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Check `settings` against type `hints`; return them coerced.

    Raises ConfigError naming `where.key` for an unknown key (listing the valid ones) or a
    value of the wrong type.
    """
    checked = {}
    for key, value in settings.items():
        if key not in hints:
            valid = ", ".join(sorted(hints))
            raise ConfigError(f"unknown setting '{where}.{key}'; valid settings: {valid}")
        annotation = hints[key]
        if not _conforms(value, annotation):
            raise ConfigError(
                f"setting '{where}.{key}' must be {_type_name(annotation)}, got {value!r}"
            )
        checked[key] = _coerce(value, annotation)
    return checked


def from_mapping(cls: type[T], settings: Mapping[str, Any], where: str) -> T:
    """Build the frozen dataclass `cls` from a params section, checking keys and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    checked = check_settings(settings, {k: v for k, v in hints.items() if k in fields}, where)
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name not in checked
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing setting '{where}.{missing[0]}'")
    return cls(**checked)


def keyword_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The type hints of a function's keyword-only parameters: its settings."""
    hints = typing.get_type_hints(func)
    params = inspect.signature(func).parameters.values()
    return {p.name: hints[p.name] for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
