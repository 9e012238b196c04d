"""Typed, checked views of `params.yaml`: the one path every params section is read through.

Reads a params file (YAML) and turns each stage's section into a frozen dataclass. Unknown
keys, ill-typed values and values out of range fail here, at the edge, with a ConfigError
naming the key's dotted name and the fix, so nothing deeper down has to second-guess its
inputs. A range is declared beside the type: `Annotated[float, Range(0, 1, high_open=True)]`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from catsdogs.core.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A params section has an unknown key, a value of the wrong type or out of range."""


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric setting, inclusive unless open: Annotated[int, Range(1)]."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        if self.low is None:
            return f"below {self.high:g}" if self.high_open else f"at most {self.high:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


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


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: {'train': {'epochs': 3}} -> {'train.epochs': 3}.

    An empty mapping stays a value of its own (`finetune: {}`), so that it can be compared.
    """
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def section(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Return `params[name]`, failing with the name when it is missing or not a mapping."""
    value = params.get(name)
    if not isinstance(value, Mapping):
        raise ConfigError(f"params key '{name}' must be a mapping of settings, got {value!r}")
    return value


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if typing.get_origin(annotation) is dict:
        key_type, item = typing.get_args(annotation)
        return f"a mapping of {_type_name(key_type)} to {_type_name(item)}"
    if typing.get_origin(annotation) in (tuple, list):
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _ranges(annotation: Any) -> list[Range]:
    """The Ranges an Annotated hint carries, also inside `X | None`."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return [extra for extra in typing.get_args(annotation)[1:] if isinstance(extra, Range)]
    if origin in (typing.Union, types.UnionType):
        return [bounds for arg in typing.get_args(annotation) for bounds in _ranges(arg)]
    return []


# A number in scientific notation, as YAML 1.1 leaves it a string: 1e-5, 3E-4, -2.5e+3.
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _conforms(value: Any, annotation: Any) -> bool:
    """Whether a YAML-loaded value fits a type hint (int for float is fine; bool for int is not)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _conforms(value, typing.get_args(annotation)[0])
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
    if origin is dict:
        key_type, item = typing.get_args(annotation) or (Any, Any)
        return isinstance(value, Mapping) and all(
            _conforms(k, key_type) and _conforms(v, item) for k, v in value.items())
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _coerce(value: Any, annotation: Any) -> Any:
    """Normalise a conforming value: lists become tuples (frozen), ints become floats."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _coerce(value, typing.get_args(annotation)[0])
    if annotation is float and isinstance(value, int):
        return float(value)
    if origin is tuple and isinstance(value, list):
        return tuple(_coerce(v, (typing.get_args(annotation) or (Any,))[0]) for v in value)
    if origin is dict and isinstance(value, Mapping):
        item = (typing.get_args(annotation) or (Any, Any))[1]
        return {k: _coerce(v, item) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if float in typing.get_args(annotation) and isinstance(value, int) \
                and not isinstance(value, bool):
            return float(value)
        # The first member the value fits decides how it is normalised (a list to a tuple).
        for arg in typing.get_args(annotation):
            if _conforms(value, arg):
                return _coerce(value, arg)
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
        if isinstance(value, str) and not _conforms(value, annotation) and \
                _SCIENTIFIC.fullmatch(value.strip()) and _conforms(1.0, annotation):
            # YAML 1.1 (PyYAML, and DVC rewriting params.yaml for `dvc exp run -S`) reads a
            # float without a dot, 1e-5, as a string; the user meant the number.
            value = float(value)
        if not _conforms(value, annotation):
            raise ConfigError(
                f"setting '{where}.{key}' must be {_type_name(annotation)}, got {value!r}"
            )
        for bounds in _ranges(annotation):
            if value is not None and value not in bounds:
                raise ConfigError(f"setting '{where}.{key}' must be {bounds}, got {value!r}")
        checked[key] = _coerce(value, annotation)
    return checked


def from_mapping(cls: type[T], settings: Mapping[str, Any], where: str) -> T:
    """Build the frozen dataclass `cls` from a params section, checking keys and types."""
    hints = typing.get_type_hints(cls, include_extras=True)
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


def read_section(params: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """The params section `name` as the checked dataclass `cls`: how every stage reads its own."""
    return from_mapping(cls, section(params, name), name)


def read_seed(params: Mapping[str, Any]) -> int:
    """The top-level `seed`: an integer, 0 when absent."""
    seed = params.get("seed", 0)
    if not _conforms(seed, int):
        raise ConfigError(f"setting 'seed' must be int, got {seed!r}")
    return seed


def keyword_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The type hints of a function's keyword-only parameters: its settings."""
    hints = typing.get_type_hints(func, include_extras=True)
    params = inspect.signature(func).parameters.values()
    return {p.name: hints[p.name] for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
