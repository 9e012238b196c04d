"""One revision's pipeline results, as a report compares them: numbers and how they were made.

Reads, through a `read` function (a file's text at a git revision, in the working tree, or
in a saved folder; None where it does not exist): `metrics/` (each model's train and eval
metrics, test predictions, per-epoch history; the machine each trained on; the data facts;
the leaderboard), `dvc.lock`
(the params each stage's outputs were made with: a model's recipe) and `params.yaml`.
Returns a Results; writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from catsdogs.core.params import flatten
from catsdogs.zoo.settings import entry_names

Reader = Callable[[str], "str | None"]
# The dvc.yaml stage groups whose params make a model's numbers.
MODEL_STAGES = ("train", "finetune", "evaluate", "evaluate_finetune")
# The machine each model trained on, as the compare stage records it from the model folders.
MACHINES_FILE = "metrics/machines.json"
# The data facts the split stage writes, and the leaderboard the compare stage writes.
DATA_FILE = "metrics/data.json"
LEADERBOARD_FILE = "metrics/leaderboard.csv"
# Each model's files a Results reads, relative to the repository root.
MODEL_FILES = ("metrics/train/{}.json", "metrics/eval/{}.json", "metrics/predictions/{}.csv",
               "metrics/history/{}.csv")


# Recipe keys of the data a model saw: `data:<path>` with the hash dvc.lock records for it.
DATA_PREFIX = "data:"


def recipes(lock: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per model, what its train and evaluate stages ran with, from dvc.lock: the params
    (flattened) and the data (`data:<path>`: hash, for each dep under data/)."""
    made: dict[str, dict[str, Any]] = {}
    for stage, entry in ((lock or {}).get("stages") or {}).items():
        group, _, model = stage.partition("@")
        if group not in MODEL_STAGES or not model:
            continue
        recipe = made.setdefault(model, {})
        for values in (entry.get("params") or {}).values():
            recipe.update(flatten(values))
        for dep in entry.get("deps") or []:
            if str(dep.get("path", "")).startswith("data/"):
                recipe[DATA_PREFIX + dep["path"]] = dep.get("md5") or dep.get("hash")
    return made


@dataclass(frozen=True)
class Results:
    """A revision's results: per model its train and eval metrics, test predictions, history
    and recipe; the data facts, the leaderboard and the params file."""

    train: dict[str, dict] = field(default_factory=dict)
    evaluation: dict[str, dict] = field(default_factory=dict)
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    history: dict[str, pd.DataFrame] = field(default_factory=dict)
    recipe: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The machine each model trained on (catsdogs.core.machine.describe), where recorded.
    machine: dict[str, dict] = field(default_factory=dict)
    data: dict | None = None
    leaderboard: pd.DataFrame | None = None
    params: dict = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """Models with both training and test numbers."""
        return [m for m in self.train if m in self.evaluation]


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _csv(text: str | None) -> pd.DataFrame | None:
    return pd.read_csv(io.StringIO(text)) if text else None


def read_results(read: Reader, models: Iterable[str]) -> Results:
    """The results of `models` (and of the zoo in params.yaml) as `read` finds them."""
    params = yaml.safe_load(read("params.yaml") or "") or {}
    names = dict.fromkeys([*models, *entry_names(params)])
    found: dict[str, dict] = {"train": {}, "evaluation": {}, "predictions": {}, "history": {}}
    for name in names:
        train, evaluation, predictions, history = (read(f.format(name)) for f in MODEL_FILES)
        for key, value in (("train", _json(train)), ("evaluation", _json(evaluation)),
                           ("predictions", _csv(predictions)), ("history", _csv(history))):
            if value is not None:
                found[key][name] = value
    return Results(**found, recipe=recipes(yaml.safe_load(read("dvc.lock") or "")),
                   machine=_json(read(MACHINES_FILE)) or {},
                   data=_json(read(DATA_FILE)),
                   leaderboard=_csv(read(LEADERBOARD_FILE)), params=params)
