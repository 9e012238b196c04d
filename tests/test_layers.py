"""The subpackages keep a one-way order, and each module stays one idea a reader can hold.

Read from the source (ast, function-level imports too), so the test needs no TensorFlow.
The order is the architecture (ARCHITECTURE.md): a part may use the parts below it, never
one above it. tracking (MLflow) sits at the edge, just below the commands: nothing in the
library imports it but the registered photo model, an MLflow pyfunc, so the library runs and
is tested without an MLflow store.
"""

from __future__ import annotations

import ast
from pathlib import Path

from test_dvc_deps import SRC, direct_imports

PACKAGE = SRC / "catsdogs"
# Lowest first. A module may import its own subpackage and those before it in this list.
LAYERS = ["core", "data", "models", "zoo", "training", "evaluation", "inference", "reports",
          "tracking", "cli"]
# Modules at the package's top level, outside the order.
TOP_LEVEL = {
    "__init__.py": "the package marker: imports nothing of ours",
    "photo_pyfunc.py": "the name registered photo models import (inference.photo_pyfunc's "
                       "earlier name); nothing of ours imports it",
}
# Modules longer than LONG_LINES, each with the one idea that makes it long.
LONG_LINES = 320
LONG_MODULES: dict[str, str] = {}


def part(path: Path) -> str | None:
    """The subpackage of a module file of catsdogs, or None for a top-level module."""
    inside = path.relative_to(PACKAGE).parts
    return inside[0] if len(inside) > 1 else None


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_lies_in_a_layer_or_is_named_top_level() -> None:
    for path in all_modules():
        where = part(path)
        assert where in LAYERS or (where is None and path.name in TOP_LEVEL), (
            f"{path.relative_to(SRC)}: put it in one of {LAYERS}, or add its subpackage to "
            "LAYERS (and ARCHITECTURE.md) where it belongs in the order")


def upward_imports() -> list[str]:
    found = []
    for path in all_modules():
        where = part(path)
        if where is None:
            continue
        allowed = set(LAYERS[:LAYERS.index(where) + 1])
        for imported in direct_imports(path):
            theirs = part(imported)
            if theirs is None:
                if imported.name != "__init__.py":
                    found.append(f"{path.relative_to(SRC)} imports top-level "
                                 f"{imported.relative_to(SRC)}")
            elif theirs not in allowed:
                found.append(f"{path.relative_to(SRC)} ({where}) imports "
                             f"{imported.relative_to(SRC)} ({theirs}, above it)")
    return found


def test_each_part_imports_only_the_parts_below_it() -> None:
    found = upward_imports()
    assert not found, "\n".join(found)


def test_the_check_sees_an_upward_import(monkeypatch) -> None:
    # The rule itself must be able to fail: data importing training is caught.
    import test_dvc_deps

    real = test_dvc_deps.direct_imports
    victim = PACKAGE / "data" / "manifest.py"
    fit = PACKAGE / "training" / "fit.py"
    monkeypatch.setattr("test_layers.direct_imports",
                        lambda path: real(path) | ({fit} if path == victim else set()))
    assert upward_imports() == ["catsdogs/data/manifest.py (data) imports "
                                "catsdogs/training/fit.py (training, above it)"]


def test_the_graph_the_rules_read_is_the_real_one() -> None:
    # Rules over an empty graph would pass: the graph has the edges the code has.
    assert len(all_modules()) > 60
    edges = {(str(a.relative_to(PACKAGE)), str(b.relative_to(PACKAGE)))
             for a in all_modules() for b in direct_imports(a)}
    assert {("tracking/registry.py", "evaluation/champion.py"),
            ("training/train.py", "training/fit.py"),
            ("cli/main.py", "cli/predict.py"),
            ("photo_pyfunc.py", "inference/photo_pyfunc.py")} <= edges


def test_the_top_level_modules_are_what_they_say() -> None:
    assert direct_imports(PACKAGE / "__init__.py") == set()
    assert {path for path in direct_imports(PACKAGE / "photo_pyfunc.py")
            if path.name != "__init__.py"} == {PACKAGE / "inference" / "photo_pyfunc.py"}
    importers = [path for path in all_modules() if PACKAGE / "photo_pyfunc.py" in direct_imports(path)]
    assert importers == []


def test_the_name_earlier_photo_models_import_is_the_classifier_of_today() -> None:
    # Versions registered before the subpackages import catsdogs.photo_pyfunc: loaded in
    # process, they get the installed package's classifier by that name.
    from catsdogs import photo_pyfunc as earlier
    from catsdogs.inference import photo_pyfunc

    assert earlier.PhotoClassifier is photo_pyfunc.PhotoClassifier
    assert "from catsdogs.inference.photo_pyfunc import PhotoClassifier" in (
        photo_pyfunc.MLFLOW_ENTRY_POINT)


def imports_mlflow(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
            return True
    return False


# Below tracking, the one module that imports MLflow: the registered model is an MLflow pyfunc.
PYFUNC = PACKAGE / "inference" / "photo_pyfunc.py"
# Modules below tracking that import MLflow through it.
THROUGH_PYFUNC = {"inference/server_client.py": "the client's refusals are the pyfunc's"}


def test_below_tracking_only_the_registered_model_imports_mlflow() -> None:
    # Tracking lives at the edge (STYLE.md 8): the library runs without an MLflow store.
    below = [path for path in all_modules()
             if part(path) in LAYERS[:LAYERS.index("tracking")]]
    assert [path for path in below if imports_mlflow(path)] == [PYFUNC]
    reach = {}
    for path in below:
        seen, todo = set(), [path]
        while todo:
            for imported in direct_imports(todo.pop()):
                if imported not in seen:
                    seen.add(imported)
                    todo.append(imported)
        reach[path] = seen
    through = {str(path.relative_to(PACKAGE)) for path in below if PYFUNC in reach[path]}
    assert through == set(THROUGH_PYFUNC)
    assert imports_mlflow(PACKAGE / "tracking" / "runs.py")  # the check can see an import


def test_no_module_is_longer_than_one_idea_needs() -> None:
    long = {str(path.relative_to(SRC)): len(path.read_text(encoding="utf-8").splitlines())
            for path in all_modules()}
    long = {name: lines for name, lines in long.items() if lines > LONG_LINES}
    unexplained = {name: lines for name, lines in long.items() if name not in LONG_MODULES}
    assert not unexplained, (f"modules over {LONG_LINES} lines: {unexplained}; split them by "
                             "idea, or say in LONG_MODULES which one idea they hold")
    for name in LONG_MODULES:
        assert name in long, f"{name} is no longer long: take it out of LONG_MODULES"
