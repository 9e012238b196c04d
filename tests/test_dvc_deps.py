"""dvc.yaml's deps are held to the code: each stage depends on every module its script runs.

A stage whose deps miss a module it imports is not re-run when that module changes, and its
cached results silently go stale. The imports are read from the source (ast), transitively,
so the test needs no TensorFlow. The import graph must also stay one-way.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from conftest import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
# Modules that cannot change a stage's outputs, so a change to them need not re-run it.
EXEMPT = {
    "src/catsdogs/__init__.py": "the package marker: sets TensorFlow's log level, computes nothing",
    "src/catsdogs/data/__init__.py": "the data subpackage's marker: a docstring, computes nothing",
    "src/catsdogs/errors.py": "the UserError base class: how a failure is shown, not what is made",
    "src/catsdogs/stage_support.py": "logging set-up and the one-line display of user errors",
    "src/catsdogs/tracking.py": "the MLflow client: what is logged about a run, not what it writes "
                                "for DVC (the ids beside a model are not compared by anyone)",
}


def module_file(name: str) -> Path | None:
    """The file of module `catsdogs.x`, or None when `name` is not a module of the package."""
    parts = name.split(".")
    if parts[0] != "catsdogs":
        return None
    path = SRC.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def direct_imports(path: Path) -> set[Path]:
    """catsdogs module files `path` imports anywhere in it (function-level imports too)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for end in range(1, len(parts) + 1):  # importing catsdogs.x runs catsdogs/__init__
                file = module_file(".".join(parts[:end]))
                if file:
                    found.add(file)
    return found - {path}


def transitive_imports(path: Path) -> set[Path]:
    """catsdogs module files `path` runs, directly or through others.

    An exempt module's own imports are not followed: what reaches a stage only through it
    cannot change the stage's outputs either (the epoch metrics' names tracking filters by do
    not make the download stage depend on catsdogs.history).
    """
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for file in direct_imports(todo.pop()):
            if file not in seen:
                seen.add(file)
                if str(file.relative_to(PROJECT_ROOT)) not in EXEMPT:
                    todo.append(file)
    return seen


def stage_bodies() -> dict[str, dict]:
    """Each dvc.yaml stage (a foreach group counts once) with its cmd and deps."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def missing_and_stale_deps() -> dict[str, tuple[list[str], list[str]]]:
    """Per stage: module files its script imports but its deps lack, and module deps it never
    imports."""
    problems = {}
    for name, body in stage_bodies().items():
        script = re.search(r"python (stages/\w+\.py)", body["cmd"])
        assert script, f"stage {name}: no `python stages/<x>.py` in its cmd"
        deps = {str(d) for d in body.get("deps", [])}
        needed = {str(f.relative_to(PROJECT_ROOT)) for f in transitive_imports(PROJECT_ROOT / script[1])}
        needed = (needed - set(EXEMPT)) | {script[1]}
        missing = sorted(needed - deps)
        stale = sorted(d for d in deps if d.startswith("src/") and d not in needed)
        if missing or stale:
            problems[name] = (missing, stale)
    return problems


def test_every_stage_depends_on_the_modules_it_runs() -> None:
    problems = missing_and_stale_deps()
    assert not problems, "\n".join(
        f"stage {name}: add to deps {missing}" + (f"; remove {stale}" if stale else "")
        for name, (missing, stale) in problems.items()
    )


def test_exemptions_name_real_modules() -> None:
    for path in EXEMPT:
        assert (PROJECT_ROOT / path).is_file(), path


def test_the_import_graph_has_no_cycles() -> None:
    graph = {f: direct_imports(f) - {SRC / "catsdogs/__init__.py"}
             for f in (SRC / "catsdogs").rglob("*.py")}
    for start, imports in graph.items():
        reachable = set()
        todo = list(imports)
        while todo:
            file = todo.pop()
            if file not in reachable:
                reachable.add(file)
                todo.extend(graph.get(file, ()))
        assert start not in reachable, f"{start.name} imports a module that imports it back"
