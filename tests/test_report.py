"""`catsdogs report`: params and metrics diffs between two commits, figures, and the workflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import PROJECT_ROOT

from catsdogs.cli import main


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def write_results(repo: Path, dropout: float, val: float, test: float) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["models"]["m1_cnn"]["dropout"] = dropout
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ("train", "eval", "history"):
        (repo / "metrics" / folder).mkdir(parents=True, exist_ok=True)
    (repo / "metrics/train/m1_cnn.json").write_text(json.dumps({"val_accuracy": val, "epochs": 2}))
    (repo / "metrics/eval/m1_cnn.json").write_text(json.dumps(
        {"accuracy": test, "confusion_matrix": [[50, 50], [40, 60]]}))
    (repo / "metrics/history/m1_cnn.csv").write_text(
        f"epoch,loss,accuracy,val_loss,val_accuracy\n1,0.7,0.5,0.7,0.5\n2,0.6,0.6,0.6,{val}\n")


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's dvc.yaml and two commits of different results."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PROJECT_ROOT / "dvc.yaml", repo / "dvc.yaml")
    git(repo, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    write_results(repo, dropout=0.2, val=0.6, test=0.55)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    write_results(repo, dropout=0.3, val=0.7, test=0.5)
    git(repo, "commit", "-qam", "head")
    return repo


def accuracy_rows(markdown: str) -> dict[str, list[str]]:
    """m1_cnn's rows of the accuracy table: metric -> [base, head, change, relative]."""
    return {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:7]]
            for line in markdown.splitlines() if line.startswith("| m1_cnn")}


def report(repo: Path, *args: str):
    return CliRunner().invoke(main, ["report", "--repo", str(repo), "--out",
                                     str(repo / "out/report.md"), *args])


def test_report_shows_params_and_accuracy_deltas_with_signs(repo: Path) -> None:
    result = report(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    text = (repo / "out/report.md").read_text()
    assert "| models.m1_cnn.dropout | 0.2   | 0.3   | params.yaml |" in text
    rows = accuracy_rows(text)
    assert rows["val_accuracy"] == ["0.6000", "0.7000", "+0.1000", "+16.7%"]
    assert rows["test_accuracy"] == ["0.5500", "0.5000", "-0.0500", "-9.1%"]
    for figure in ("m1_cnn_curves.png", "m1_cnn_confusion.png"):
        assert (repo / "out/figures" / figure).stat().st_size > 1000
        assert f"(figures/{figure})" in text


def test_report_says_when_nothing_changed(repo: Path) -> None:
    result = report(repo, "--base", "HEAD", "--head", "HEAD")
    assert result.exit_code == 0, result.output
    assert "No parameter changes." in result.output and "No metric changes." in result.output


def test_report_against_a_base_without_metrics(repo: Path) -> None:
    # A commit of the empty tree: a base from before the pipeline existed.
    empty_tree = subprocess.run(["git", "hash-object", "-t", "tree", "/dev/null"], cwd=repo,
                                check=True, capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree",
                             empty_tree, "-m", "no metrics yet"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout.strip()
    git(repo, "branch", "empty", commit)
    result = report(repo, "--base", "empty")
    assert result.exit_code == 0, result.output
    assert "The base (empty) has no metrics yet" in result.output
    assert accuracy_rows(result.output)["val_accuracy"] == ["-", "0.7000", "-", "-"]


def test_unknown_base_is_a_clear_error(repo: Path) -> None:
    result = report(repo, "--base", "origin/nope")
    assert result.exit_code == 1 and "unknown git revision 'origin/nope'" in result.output


def test_workflows_validate_against_the_github_schema() -> None:
    workflows = sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
