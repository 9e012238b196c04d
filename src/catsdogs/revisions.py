"""Reading the pipeline's results at git revisions: the edge between `report` and git/DVC.

Runs `git` and `dvc` in a repository and returns their answers: file contents at a
revision (or the working tree), and the JSON of `dvc params diff` / `dvc metrics diff`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


class RevisionError(ValueError):
    """A revision git does not know, or a git/DVC command that failed."""


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RevisionError(f"`{' '.join(args)}` failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def check_revision(repo: Path, rev: str) -> str:
    """The commit `rev` names; an unknown revision is a RevisionError naming it."""
    try:
        return _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo).strip()
    except RevisionError:
        raise RevisionError(
            f"unknown git revision '{rev}'; fetch it first (e.g. git fetch origin) or name "
            "a branch, tag or commit"
        ) from None


def read_text(repo: Path, rev: str | None, path: str) -> str | None:
    """A file's text at `rev` (None: the working tree), or None where it does not exist."""
    if rev is None:
        file = repo / path
        return file.read_text(encoding="utf-8") if file.is_file() else None
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def list_files(repo: Path, rev: str | None, folder: str) -> list[str]:
    """File names directly in `folder` at `rev` (None: the working tree)."""
    if rev is None:
        path = repo / folder
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []
    out = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{folder}"], cwd=repo,
                         capture_output=True, text=True)
    return sorted(out.stdout.split()) if out.returncode == 0 else []


def dvc_diff(
    repo: Path, kind: str, base: str, head: str | None, *, unchanged: bool = False
) -> dict[str, Any]:
    """`dvc params diff` or `dvc metrics diff` (kind) between base and head, as JSON.

    `unchanged` (--all) includes values that did not change, so every model gets a row.
    """
    # This interpreter's DVC: the one installed with catsdogs, activated venv or not.
    args = [sys.executable, "-m", "dvc", kind, "diff", base, *([head] if head else []),
            *(["--all"] if unchanged else []), "--json"]
    out = _run(args, repo).strip()
    return json.loads(out) if out else {}
