"""git and DVC at the edge: files at revisions, clones, and `dvc` commands.

Runs `git` and `dvc` in a repository and returns their answers: a commit's id, a file's
text at a revision (or in the working tree), a clone checked out at a revision, the output
of a `dvc` command and the stages it ran. Used by `catsdogs report` and `pr-report`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from catsdogs.core.errors import UserError


class RevisionError(UserError):
    """A revision git does not know, or a git/DVC command that failed."""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, *,
         with_stderr: bool = False) -> str:
    """The command's stdout, which callers parse (a warning on stderr must not pass for an
    answer); `with_stderr` adds stderr after it, for logs such as `dvc repro`'s."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise RevisionError(f"`{' '.join(args)}` failed in {cwd}: {output[-1500:]}")
    return result.stdout + result.stderr if with_stderr else result.stdout


def check_revision(repo: Path, rev: str) -> str:
    """The commit `rev` names; an unknown revision is a RevisionError naming it."""
    try:
        return _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo).strip()
    except RevisionError:
        raise RevisionError(
            f"unknown git revision '{rev}'; fetch it first (e.g. git fetch origin) or name "
            "a branch, tag or commit"
        ) from None


def changed_files(repo: Path) -> list[str]:
    """Tracked files that differ from HEAD in the working tree."""
    output = _run(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    return [line[3:] for line in output.splitlines() if line.strip()]


def read_text(repo: Path, rev: str | None, path: str) -> str | None:
    """A file's text at `rev` (None: the working tree), or None where it does not exist."""
    if rev is None:
        file = repo / path
        return file.read_text(encoding="utf-8") if file.is_file() else None
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def reader(repo: Path, rev: str | None) -> Callable[[str], str | None]:
    """read_text at one revision, as a function of the path alone."""
    return lambda path: read_text(repo, rev, path)


def folder_reader(folder: Path) -> Callable[[str], str | None]:
    """The text of files under `folder`, by relative path; None where absent."""
    def read(path: str) -> str | None:
        file = folder / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    return read


def clone_at(repo: Path, rev: str, dest: Path) -> Path:
    """A clone of `repo` in `dest`, checked out (detached) at commit `rev`."""
    _run(["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(dest)], repo)
    _run(["git", "checkout", "-q", "--detach", rev], dest)
    return dest


def dvc(repo: Path, *args: str, with_stderr: bool = False, own_store: bool = False) -> str:
    """Run `dvc ARGS` in `repo` with this interpreter's DVC; its stdout (and stderr after it,
    with `with_stderr`). The stages import the `catsdogs` of `repo`'s own src/. With
    `own_store`, they log to the repository's own MLflow store (its mlflow.db), never to a
    tracking server MLFLOW_TRACKING_URI names."""
    # This interpreter's tools first on PATH: the stages' `python` must be the one that has
    # catsdogs' requirements, whatever shell DVC runs them in. Its catsdogs, though, is the
    # checkout it was installed from (an editable install): a clone at the base commit would
    # run the head's code, and its numbers (and DVC's run cache, keyed by the base's files)
    # would be the head's. The clone's src/ first on the path makes them the base's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if (repo / "src" / "catsdogs").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str((repo / "src").resolve()), os.environ.get("PYTHONPATH")]))
    if own_store:
        env.pop("MLFLOW_TRACKING_URI", None)
    return _run([sys.executable, "-m", "dvc", *args], repo, env=env, with_stderr=with_stderr)


def has_remote(repo: Path) -> bool:
    """Whether the repository configures a DVC remote."""
    return bool(dvc(repo, "remote", "list").strip())


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` output says it ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


# What `dvc status` says of an output or a data dependency that is only absent here (a clone
# without the DVC cache): not a sign that the committed results are stale.
MISSING_ONLY = frozenset({"deleted", "not in cache"})


def stale_stages(status: dict) -> dict[str, list[str]]:
    """The stages whose committed results no longer match their command, code or params, from
    `dvc status --json`'s answer, each with what changed; missing outputs and data don't count."""
    stale: dict[str, list[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # e.g. "changed command", "always changed"
                stale.setdefault(stage, []).append(entry)
                continue
            for kind, files in entry.items():
                for path, how in files.items() if isinstance(files, dict) else []:
                    # Changed params come as a changed dep, the params file, whose `how` is a
                    # mapping of each changed key to how it changed.
                    if isinstance(how, dict):
                        stale.setdefault(stage, []).extend(
                            f"{kind} {path}: {key} ({change})" for key, change in how.items())
                    elif how not in MISSING_ONLY:
                        stale.setdefault(stage, []).append(f"{kind} {path} ({how})")
    return stale


def stale_at(repo: Path, rev: str) -> dict[str, list[str]]:
    """stale_stages of commit `rev`: its dvc.lock against its own code and params."""
    with tempfile.TemporaryDirectory(prefix="catsdogs-status-") as tmp:
        clone = clone_at(repo, rev, Path(tmp) / "repo")
        return stale_stages(json.loads(dvc(clone, "status", "--json") or "{}"))
