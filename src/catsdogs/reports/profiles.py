"""Profiles: named sets of params overrides, a short version of the recipe (profiles.yaml).

Reads profiles.yaml (a dict of {name: {dotted params key: value}}); `apply_profile` returns a
params dict with a profile's overrides applied, where `section.*.key` sets `key` in every
entry of a section. Pure: writes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from catsdogs.core.params import ConfigError

PROFILES_FILE = "profiles.yaml"


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    """The profiles defined in `path`; a missing file has none."""
    if not Path(path).is_file():
        return {}
    profiles = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(profiles, Mapping) or not all(isinstance(v, Mapping) for v in profiles.values()):
        raise ConfigError(f"'{path}' must map profile names to {{params key: value}} overrides")
    return {name: dict(overrides) for name, overrides in profiles.items()}


def apply_profile(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `params` with `overrides` ({dotted key: value}) applied.

    `section.*.key` sets `key` in every entry of `section`; any other key must name an
    existing mapping up to its last part.
    """
    result = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        parts = key.split(".")
        targets = [result]
        for part in parts[:-1]:
            if part == "*":
                targets = [entry for target in targets for entry in target.values()
                           if isinstance(entry, dict)]
                continue
            if not all(isinstance(target.get(part), dict) for target in targets):
                raise ConfigError(f"profile key '{key}': params have no section '{part}'")
            targets = [target[part] for target in targets]
        for target in targets:
            target[parts[-1]] = value
    return result


def describe(overrides: Mapping[str, Any]) -> str:
    """The overrides as `key=value, ...`, for a report's header."""
    return ", ".join(f"{key}={value}" for key, value in overrides.items())


def digest(overrides: Mapping[str, Any]) -> str:
    """A short digest of a profile's overrides: results made under it are kept by it."""
    text = json.dumps(dict(overrides), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
