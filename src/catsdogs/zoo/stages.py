"""Which params key decides each training setting of each zoo entry: dvc.yaml's stage list.

DVC gives every stage of a `foreach` group the same params list and cannot build a list per
entry, but a zoo entry takes `train.epochs` (say) only when it does not set `epochs` itself.
So dvc.yaml's train, finetune and evaluate groups iterate over `zoo_stages` in
ZOO_STAGES_FILE, written from params.yaml by `catsdogs zoo-stages`: per entry, and per setting
an entry may set for itself, the params key that decides it (`train.epochs`, or the entry's
own section, `models.m4_transfer`, which its stage lists anyway). A train stage then depends
on exactly the defaults its model inherits: `dvc exp run -S train.epochs=5` retrains the
models that take their epochs from `train`, and none that set their own.

The names of the stages made from it are said here too (`training_stage`, `evaluation_stage`).
Pure: `zoo_stages(params)` returns the mapping, `render` its file's text; the CLI writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from catsdogs.core.params import ConfigError
from catsdogs.zoo.settings import ENTRY_TRAIN_KEYS, FINETUNE_TRAIN_KEYS, entry_names

# Beside the stage scripts; dvc.yaml loads it with `vars`. Committed, and held equal to
# params.yaml by tests/test_dvc_deps.py.
ZOO_STAGES_FILE = "stages/zoo.yaml"
# Its top-level key: the name dvc.yaml's `foreach: ${zoo_stages.train}` reads.
ZOO_STAGES_KEY = "zoo_stages"
HEADER = """\
# Written by `catsdogs zoo-stages` from params.yaml: do not edit; rerun it after adding,
# removing or renaming a zoo entry, or after giving one a setting of its own (image_size,
# batch_size, epochs, precision). Per entry, the params key that decides each of those
# settings: `train.<setting>` where the entry inherits it, the entry's own section where it
# sets it. dvc.yaml's train@, finetune@ and evaluate@ stages iterate over this, so each train
# stage depends on the defaults its model uses and no others.
"""


def training_stage(params: Mapping[str, Any], model: str) -> str:
    """The dvc.yaml stage that trains zoo entry `model`: train@<model> or finetune@<model>."""
    return f"{'finetune' if model in (params.get('finetune') or {}) else 'train'}@{model}"


def evaluation_stage(params: Mapping[str, Any], model: str) -> str:
    """The dvc.yaml stage that evaluates zoo entry `model`."""
    tuned = model in (params.get("finetune") or {})
    return f"{'evaluate_finetune' if tuned else 'evaluate'}@{model}"


def with_fine_tunes(params: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    """`models` and every fine-tuned entry that continues one of them, in zoo order."""
    chosen = set(models)
    tuned = params.get("finetune") or {}
    chosen |= {name for name, entry in tuned.items() if (entry or {}).get("init_from") in chosen}
    return [name for name in entry_names(params) if name in chosen]


def _entries(params: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = params.get(name) or {}
    if not isinstance(value, Mapping) or not all(isinstance(e, Mapping) for e in value.values()):
        raise ConfigError(f"params key '{name}' must map entry names to their settings")
    return value


def zoo_stages(params: Mapping[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """{"train": {model: item}, "finetune": {model: item}}: a `models` item holds `arch` and,
    per setting of ENTRY_TRAIN_KEYS, the params key deciding it; a `finetune` item holds
    `init_from` and the same, its image size being its parent's."""
    models, finetune = _entries(params, "models"), _entries(params, "finetune")

    def deciding(section: str, name: str, entry: Mapping[str, Any], setting: str) -> str:
        return f"{section}.{name}" if setting in entry else f"train.{setting}"

    train = {name: {"arch": str(entry.get("arch")),
                    **{s: deciding("models", name, entry, s) for s in ENTRY_TRAIN_KEYS}}
             for name, entry in models.items()}
    tuned = {}
    for name, entry in finetune.items():
        parent = entry.get("init_from")
        if parent not in train:
            raise ConfigError(f"finetune.{name}.init_from '{parent}' is not a model of the zoo; "
                              f"choose from: {', '.join(train)}")
        item = {"init_from": str(parent), "image_size": train[parent]["image_size"]}
        item.update({s: deciding("finetune", name, entry, s) for s in FINETUNE_TRAIN_KEYS})
        tuned[name] = item
    return {"train": train, "finetune": tuned}


def render(params: Mapping[str, Any]) -> str:
    """ZOO_STAGES_FILE's text for `params`: the header, then one flow mapping per entry."""
    stages = zoo_stages(params)
    lines = [HEADER.rstrip("\n"), f"{ZOO_STAGES_KEY}:"]
    for group, items in stages.items():
        if not items:
            lines.append(f"  {group}: {{}}")
            continue
        lines.append(f"  {group}:")
        for name, item in items.items():
            flow = yaml.safe_dump({name: item}, default_flow_style=None, sort_keys=False, width=1000)
            lines.append("    " + flow.strip())
    return "\n".join(lines) + "\n"
