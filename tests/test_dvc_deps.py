"""dvc.yaml's deps are held to the code: each stage depends on every module its script runs,
and each train stage on the settings its model uses.

A stage whose deps miss a module it imports is not re-run when that module changes, and its
cached results silently go stale. The imports are read from the source (ast), transitively,
so the test needs no TensorFlow. The import graph must also stay one-way. A train stage's
params are the `train` defaults its zoo entry inherits and its own entry, no more (a changed
default another entry overrides retrains nothing of it) and no less.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import PROJECT_ROOT, project_params, sh, tool_env, write_params

from catsdogs.cli.main import main
from catsdogs.zoo.settings import ENTRY_TRAIN_KEYS, FINETUNE_TRAIN_KEYS
from catsdogs.zoo.stages import ZOO_STAGES_FILE, render

SRC = PROJECT_ROOT / "src"
# Modules that cannot change a stage's outputs, so a change to them need not re-run it.
EXEMPT = {
    "src/catsdogs/__init__.py": "the package marker: sets TensorFlow's log level, computes nothing",
    "src/catsdogs/core/errors.py": "the UserError base class: how a failure is shown, not what is "
                                   "made",
    "src/catsdogs/cli/stage_support.py": "logging set-up and the one-line display of user errors",
}
# Whole subpackages exempt for the same reason.
EXEMPT_PACKAGES = {
    "src/catsdogs/tracking/": "the MLflow client: what is logged about a run, not what it writes "
                              "for DVC (the ids beside a model are not compared by anyone)",
}

# Modules a stage reaches only through an exempt one, whose work still lands in its outputs.
EXTRA_DEPS = {
    "compare": {"src/catsdogs/evaluation/champion.py":
                "the registry's decision and its reason are written into reports/leaderboard.md"},
}


def subpackage_markers() -> set[str]:
    """Each subpackage's __init__.py: a docstring only (test_subpackage_markers_compute_nothing),
    so importing through it computes nothing."""
    return {str(p.relative_to(PROJECT_ROOT)) for p in (SRC / "catsdogs").glob("*/__init__.py")}


def exempt(path: str) -> bool:
    """Whether a change to module file `path` (relative to the project) cannot change a stage's
    outputs."""
    return (path in EXEMPT or path in subpackage_markers()
            or any(path.startswith(folder) for folder in EXEMPT_PACKAGES))


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
    not make the download stage depend on catsdogs.training.history).
    """
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for file in direct_imports(todo.pop()):
            if file not in seen:
                seen.add(file)
                if not exempt(str(file.relative_to(PROJECT_ROOT))):
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
        needed = ({path for path in needed if not exempt(path)} | {script[1]}
                  | set(EXTRA_DEPS.get(name, {})))
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
    for folder in EXEMPT_PACKAGES:
        assert (PROJECT_ROOT / folder / "__init__.py").is_file(), folder
    for stage, extra in EXTRA_DEPS.items():
        assert stage in stage_bodies(), stage
        for path in extra:
            assert (PROJECT_ROOT / path).is_file() and not exempt(path), path


def test_subpackage_markers_compute_nothing() -> None:
    for path in subpackage_markers():
        body = ast.parse((PROJECT_ROOT / path).read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(
            body[0].value, ast.Constant), f"{path}: a docstring only, or list it in EXEMPT"


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


# -- each train stage's params: the settings its model uses -----------------------------------


def expected_params(params: dict) -> dict[str, set[str]]:
    """Per training stage, the params keys that decide its model, worked out from the zoo
    here (not from stages/zoo.yaml): the seed, the strategy, each `train` default the entry
    does not set itself, its entry, and for a fine-tune its parent's entry and image size."""
    expected = {}
    for name, entry in params["models"].items():
        inherited = {f"train.{key}" for key in ENTRY_TRAIN_KEYS if key not in entry}
        expected[f"train@{name}"] = {"seed", "train.strategy", f"models.{name}"} | inherited
    for name, entry in (params.get("finetune") or {}).items():
        parent = entry["init_from"]
        inherited = {f"train.{key}" for key in FINETUNE_TRAIN_KEYS if key not in entry}
        if "image_size" not in params["models"][parent]:
            inherited.add("train.image_size")
        expected[f"finetune@{name}"] = {"seed", "train.strategy", f"models.{parent}",
                                        f"finetune.{name}"} | inherited
    return expected


def resolved_params(root: Path) -> dict[str, set[str]]:
    """Per train / finetune stage of dvc.yaml in `root`, the params keys DVC resolves."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {stage.name: {key for dep in stage.deps if hasattr(dep, "params")
                                   for key in dep.params}
                for stage in repo.index.stages
                if stage.name.startswith(("train@", "finetune@"))}


def test_the_zoo_stages_file_is_the_one_params_yaml_makes() -> None:
    committed = (PROJECT_ROOT / ZOO_STAGES_FILE).read_text()
    assert committed == render(project_params()), (
        f"{ZOO_STAGES_FILE} does not match the zoo in params.yaml: run `catsdogs zoo-stages`")


def test_catsdogs_zoo_stages_writes_checks_and_names_the_fix(tmp_path: Path) -> None:
    params = project_params()
    write_params(tmp_path / "params.yaml", params)
    args = ["zoo-stages", "--params", str(tmp_path / "params.yaml")]
    zoo_file = tmp_path / ZOO_STAGES_FILE
    check = CliRunner().invoke(main, [*args, "--check"])
    assert check.exit_code == 1 and "run `catsdogs zoo-stages`" in check.output
    assert not zoo_file.exists()
    written = CliRunner().invoke(main, args)
    assert written.exit_code == 0, written.output
    assert zoo_file.read_text() == render(params)
    assert CliRunner().invoke(main, [*args, "--check"]).exit_code == 0
    params["models"][next(iter(params["models"]))]["epochs"] = 3  # an override of its own
    write_params(tmp_path / "params.yaml", params)
    assert CliRunner().invoke(main, [*args, "--check"]).exit_code == 1
    assert CliRunner().invoke(main, args).exit_code == 0
    assert "epochs: models." in zoo_file.read_text().splitlines()[8]
    params["finetune"] = {"tuned": {"init_from": "nope", "fine_tune_at": 1}}
    write_params(tmp_path / "params.yaml", params)
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 1 and "finetune.tuned.init_from 'nope' is not a model" in bad.output


def test_each_train_stage_depends_on_the_settings_its_model_uses() -> None:
    expected = expected_params(project_params())
    assert resolved_params(PROJECT_ROOT) == expected
    # The zoo as committed has entries of each kind: some inherit epochs, some set their own.
    epochs_from_train = {s for s, keys in expected.items() if "train.epochs" in keys}
    assert epochs_from_train and epochs_from_train != set(expected)


def test_a_zoo_of_other_overrides_gets_other_params(tmp_path: Path) -> None:
    params = project_params()
    first, second = list(params["models"])[:2]
    params["models"][first]["batch_size"] = 16   # its own batch size now
    params["models"][second].pop("epochs", None)
    params["models"][second]["image_size"] = 96
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    (tmp_path / "stages").mkdir()
    (tmp_path / ZOO_STAGES_FILE).write_text(render(params))
    write_params(tmp_path / "params.yaml", params)
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    resolved = resolved_params(tmp_path)
    assert "train.batch_size" not in resolved[f"train@{first}"]
    assert {"train.epochs", "train.batch_size"} <= resolved[f"train@{second}"]
    assert "train.image_size" not in resolved[f"train@{second}"]
    assert resolved == expected_params(params)


def changed_params(root: Path) -> set[str]:
    result = subprocess.run(["dvc", "status", "--json"], cwd=root, env=tool_env(),
                            capture_output=True, text=True, check=True)
    # A changed param is listed among the changed deps, under its params file.
    return {stage for stage, entries in json.loads(result.stdout or "{}").items()
            for entry in entries if isinstance(entry, dict)
            and "params.yaml" in entry.get("changed deps", {})}


@pytest.mark.parametrize("setting", ["train.epochs=5", "train.batch_size=16"])
def test_a_changed_default_makes_stale_only_the_models_that_inherit_it(
        tmp_path: Path, setting: str) -> None:
    # The committed dvc.lock against params.yaml with one default changed, as `dvc exp run -S`
    # writes it: which stages' params changed, beyond any the branch already changed.
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(PROJECT_ROOT / "stages", tmp_path / "stages")
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    before = changed_params(tmp_path)
    key, value = setting.split("=")
    params = project_params()
    params["train"][key.split(".")[1]] = int(value)
    write_params(tmp_path / "params.yaml", params)
    inheriting = {stage for stage, keys in expected_params(params).items() if key in keys}
    assert inheriting
    assert changed_params(tmp_path) - before == (inheriting | {"compare"}) - before
