"""The subpackages keep a one-way order, and each module stays one idea a reader can hold.

Read from the source (ast, function-level imports too), so the test needs no TensorFlow.
The order is the architecture (ARCHITECTURE.md): a part may use the parts below it, never
one above it. tracking (MLflow) sits at the edge, just below the commands: nothing in the
library imports it, so the library runs and is tested without an MLflow store.
"""

from __future__ import annotations

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


def test_the_check_sees_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    # The rule itself must be able to fail: data importing training is caught.
    import test_dvc_deps

    real = test_dvc_deps.direct_imports
    victim = PACKAGE / "data" / "manifest.py"
    loop = next((PACKAGE / "training").glob("*.py"))
    monkeypatch.setattr("test_layers.direct_imports",
                        lambda path: real(path) | ({loop} if path == victim else set()))
    found = upward_imports()
    assert found == [f"catsdogs/data/manifest.py (data) imports "
                     f"{loop.relative_to(SRC)} (training, above it)"]


def test_the_library_never_imports_mlflow() -> None:
    # Tracking lives at the edge (STYLE.md 8): only tracking and the commands talk to MLflow.
    # inference.photo_pyfunc is the registered model itself: MLflow's pyfunc interface.
    for path in all_modules():
        if part(path) in {"tracking", "cli"} or path.name == "photo_pyfunc.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "import mlflow" not in text and "from mlflow" not in text, path.relative_to(SRC)


def test_no_module_is_longer_than_one_idea_needs() -> None:
    long = {str(path.relative_to(SRC)): len(path.read_text(encoding="utf-8").splitlines())
            for path in all_modules()}
    long = {name: lines for name, lines in long.items() if lines > LONG_LINES}
    unexplained = {name: lines for name, lines in long.items() if name not in LONG_MODULES}
    assert not unexplained, (f"modules over {LONG_LINES} lines: {unexplained}; split them by "
                             "idea, or say in LONG_MODULES which one idea they hold")
    for name in LONG_MODULES:
        assert name in long, f"{name} is no longer long: take it out of LONG_MODULES"
