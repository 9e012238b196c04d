"""Which stages a change touches, worked out before anything trains.

Reads two checkouts of the pipeline (the base's and the head's, params as they will run) through
DVC's own reading of dvc.yaml, and returns, per stage of the head, why it must run again:
its command, a params value or a file it depends on differs, or a stage it depends on must
run again. Outputs of other stages are not hashed (they do not exist yet): a stage is
touched through them exactly when the stage that makes them is. What nothing touched makes
the same numbers at both revisions, so a report need not train it; models_touched names the
zoo entries whose training or evaluation was touched.
Writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.core.params import flatten
from catsdogs.zoo.settings import entry_names
from catsdogs.zoo.stages import evaluation_stage, training_stage


@dataclass(frozen=True)
class StageView:
    """What decides one stage's outputs: its command, params values, the contents of the
    files it depends on that no stage makes, and the stages whose outputs it reads."""

    cmd: str
    params: dict
    files: dict[str, str]
    upstream: frozenset[str]


def _content_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's relative paths and contents; "absent" if neither."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    else:
        return "absent"
    return digest.hexdigest()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def stage_views(root: Path) -> dict[str, StageView]:
    """Every stage of the pipeline in `root`, by name, as DVC resolves dvc.yaml there."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        made_by = {str(out.def_path): stage.name for stage in stages for out in stage.outs}
        views = {}
        for stage in stages:
            params, files, upstream = {}, {}, set()
            for dep in stage.deps:
                if hasattr(dep, "read_params"):  # a whole section is compared key by key
                    params.update(flatten(dep.read_params()))
                    continue
                path = str(dep.def_path)
                makers = {name for out, name in made_by.items()
                          if _inside(path, out) or _inside(out, path)}
                if makers:
                    upstream |= makers - {stage.name}
                else:
                    files[path] = _content_digest(root / path)
            views[stage.name] = StageView(str(stage.cmd), params, files, frozenset(upstream))
    return views


def _own_changes(old: StageView | None, new: StageView) -> list[str]:
    if old is None:
        return ["new stage"]
    reasons = []
    if old.cmd != new.cmd:
        reasons.append("command")
    reasons += [f"param {key}" for key in sorted(set(old.params) | set(new.params))
                if old.params.get(key) != new.params.get(key)]
    reasons += [f"file {path}" for path in sorted(set(old.files) | set(new.files))
                if old.files.get(path) != new.files.get(path)]
    return reasons


def touched_stages(base: dict[str, StageView], head: dict[str, StageView]) -> dict[str, list[str]]:
    """Per stage of `head` that must run again, why: its own changes, or the upstream stages
    it reads that must; stages nothing touched are left out."""
    touched: dict[str, list[str]] = {}
    changed = True
    while changed:  # upstream first, as far as the graph goes
        changed = False
        for name, view in head.items():
            reasons = _own_changes(base.get(name), view)
            reasons += [f"after {up}" for up in sorted(view.upstream) if up in touched]
            if reasons and touched.get(name) != reasons:
                touched[name] = reasons
                changed = True
    return touched


def downstream(views: Mapping[str, StageView], names: Iterable[str]) -> set[str]:
    """`names` and every stage that reads, directly or not, what one of them makes."""
    found = set(names)
    grew = True
    while grew:
        grew = False
        for name, view in views.items():
            if name not in found and view.upstream & found:
                found.add(name)
                grew = True
    return found


def models_touched(params: Mapping[str, Any], touched: Mapping[str, Any]) -> list[str]:
    """The zoo entries of `params` whose training or evaluation is among `touched`."""
    return [m for m in entry_names(params)
            if {training_stage(params, m), evaluation_stage(params, m)} & set(touched)]
