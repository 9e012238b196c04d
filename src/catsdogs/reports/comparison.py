"""What a change did, model by model: the params it sets, and each model's numbers compared.

Takes two Results (the base's and the head's, see results.py) and says, per model: the
validation and test accuracy at each with its 95% interval, and, on the same test photos,
how many the head fixed and broke, the exact McNemar p-value and a verdict. A model whose two
sets of numbers were made under settings that differ in a way the pull request did not
cause (a profile on one side only, a stale dvc.lock) is named, with those settings, and not
compared; so is one whose two sets were made on different machines (`catsdogs.core.machine`).
Returns ModelReports (report.py renders them); reads and writes nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from catsdogs.core.params import flatten
from catsdogs.evaluation.stats import PairedComparison, compare_paired, wilson_interval
from catsdogs.reports.results import DATA_PREFIX, Results

# The verdict of a model whose base and head numbers come from different machines.
OTHER_MACHINES = "not comparable: made on different machines"
# The verdict of a model a pull-request report did not train: nothing it depends on changed.
UNTOUCHED = "unchanged: nothing it depends on changed"
# The params sections whose change may change the photos a model sees, and the folder of
# the weights each architecture starts from (`pretrained.<arch>` fetches them).
DATA_SECTIONS = ("download.", "split.")
PRETRAINED_DIR = "data/pretrained/"


def param_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> pd.DataFrame:
    """One row per params.yaml key whose value differs: param, base and head value."""
    old, new = flatten(base), flatten(head)
    rows = [{"param": key, "base": old.get(key, "(absent)"), "head": new.get(key, "(absent)")}
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    # dtype object: a column of whole numbers beside floats stays as written (128, not 128.0).
    return pd.DataFrame(rows, columns=["param", "base", "head"], dtype=object)


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with the number of images it counts, and its 95% Wilson interval."""

    value: float
    total: int

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(round(self.value * self.total), self.total)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.4f} ({low:.3f}-{high:.3f})"


@dataclass(frozen=True)
class ModelReport:
    """One model at base and head: its accuracies, and the paired test comparison or why none."""

    model: str
    base_val: Accuracy | None = None
    head_val: Accuracy | None = None
    base_test: Accuracy | None = None
    head_test: Accuracy | None = None
    paired: PairedComparison | None = None
    unexplained: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # (base, head) machine records, where they differ.
    machines: tuple[dict, dict] | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        if self.paired is None:
            return "no paired predictions"
        unchanged = self.paired.fixed == self.paired.broken == 0 and (
            self.base_val and self.head_val and self.base_val.value == self.head_val.value)
        return "unchanged" if unchanged else self.paired.verdict


def _accuracies(results: Results, model: str) -> tuple[Accuracy | None, Accuracy | None]:
    train, evaluation = results.train.get(model), results.evaluation.get(model)
    splits = (results.data or {}).get("splits", {})
    val = Accuracy(train["val_accuracy"], splits.get("validation", {}).get("total", 0)) if train else None
    test = Accuracy(evaluation["accuracy"], evaluation.get("count", 0)) if evaluation else None
    return val, test


def _input_change_explained(path: str, changed: set[str]) -> bool:
    """Whether params the pull request changed explain other data at `path`: the pretrained
    weights of an architecture (data/pretrained/<arch>) by its `pretrained.<arch>` entry, the
    photos and the split by the `download` and `split` sections."""
    if path.startswith(PRETRAINED_DIR):
        section = f"pretrained.{path[len(PRETRAINED_DIR):].split('/')[0]}"
        return any(key == section or key.startswith(f"{section}.") for key in changed)
    return any(key.startswith(DATA_SECTIONS) for key in changed)


def _unexplained(base: Results, head: Results, model: str, changed: set[str]) -> dict[str, tuple]:
    """Settings the model's two sets of numbers were made under that differ, and that the
    pull request did not change (its changed params keys are `changed`)."""
    old, new = base.recipe.get(model, {}), head.recipe.get(model, {})
    differing = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or key in changed:
            continue
        if key.startswith(DATA_PREFIX) and _input_change_explained(key[len(DATA_PREFIX):],
                                                                   changed):
            continue
        differing[key] = (old.get(key, "(absent)"), new.get(key, "(absent)"))
    return differing


def _machines(base: Results, head: Results, model: str) -> tuple[dict, dict] | None:
    """The two machine records of `model`, when both are known and their fingerprints differ."""
    old, new = base.machine.get(model), head.machine.get(model)
    if not old or not new or old.get("fingerprint") == new.get("fingerprint"):
        return None
    return old, new


def _paired(base: Results, head: Results, model: str) -> PairedComparison | None:
    old, new = base.predictions.get(model), head.predictions.get(model)
    if old is None or new is None:
        return None
    both = old.merge(new, on="path", suffixes=("_base", "_head"))
    if both.empty:
        return None
    return compare_paired(list(both["actual_base"] == both["predicted_base"]),
                          list(both["actual_head"] == both["predicted_head"]))


def compare_models(base: Results, head: Results, changed: set[str],
                   untouched: Sequence[str] = (), removed: Sequence[str] = ()) -> list[ModelReport]:
    """A ModelReport per model at either revision: head's order first, then removed ones.
    `untouched` models were not trained for the report, as nothing they depend on changed:
    they get the base's numbers where known, none made up for the head, and UNTOUCHED;
    `removed` ones are in the base's zoo only, with or without numbers."""
    reports = []
    for model in dict.fromkeys([*head.models, *untouched, *base.models, *removed]):
        base_val, base_test = _accuracies(base, model)
        head_val, head_test = _accuracies(head, model)
        numbers = {"base_val": base_val, "head_val": head_val, "base_test": base_test,
                   "head_test": head_test}
        if model in untouched:
            reports.append(ModelReport(model, base_val=base_val, base_test=base_test,
                                       note=UNTOUCHED))
        elif model in removed or (model in base.models and model not in head.models):
            reports.append(ModelReport(model, **numbers, note="removed: no head numbers"))
        elif model not in base.models:
            reports.append(ModelReport(model, **numbers, note="new: no base numbers"))
        elif differing := _unexplained(base, head, model, changed):
            reports.append(ModelReport(model, **numbers, unexplained=differing,
                                       note="not comparable"))
        elif machines := _machines(base, head, model):
            # The CNNs trained from scratch move by points between kinds of CPU: a difference
            # here may be the hardware's, not the change's.
            reports.append(ModelReport(model, **numbers, machines=machines, note=OTHER_MACHINES))
        else:
            reports.append(ModelReport(model, **numbers, paired=_paired(base, head, model)))
    return reports
