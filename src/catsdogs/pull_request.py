"""Results for a pull-request report, made like for like at the base and the head.

Two ways to make them:
- as committed (`committed`): the recipe in params.yaml. The head's outputs come from the DVC
  remote (`dvc pull`) and `dvc repro` retrains what the change made stale; the base's numbers
  are the metrics/ and dvc.lock committed with it.
- under a profile of profiles.yaml (e.g. `fast`): the same short recipe runs at both
  revisions, each in a clone that shares the repository's DVC cache, so a stage the two share
  runs once (DVC's run cache). Results are kept in a folder by commit and profile, so the
  next push of a pull request reuses its base's.
Either way the stages log to a store of their own (the repository's or the clone's
mlflow.db, kept with the results), never to the tracking server MLFLOW_TRACKING_URI names:
a report's runs, short-recipe models among them, must not reach the team's registry.
Runs git and DVC (revisions.py); returns where the results can be read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from catsdogs.atomic import atomic_dir
from catsdogs.profiles import apply_profile, digest
from catsdogs.revisions import (
    RevisionError,
    changed_files,
    clone_at,
    dvc,
    folder_reader,
    ran_stages,
    reader,
)

# What a results folder keeps of a pipeline run: enough for results.read_results, and the
# runs' own MLflow store (params, metrics, tags; their artifacts stay in the deleted clone).
KEPT = ("dvc.lock", "params.yaml", "metrics", "mlflow.db")


@dataclass(frozen=True)
class Made:
    """Where a revision's results can be read, and what it took: the stages `dvc repro` ran
    (empty when nothing was stale), or whether they came from the results folder."""

    read: Callable[[str], str | None]
    ran: tuple[str, ...] = ()
    reused: bool = False


def made_as_committed(repo: Path) -> Made:
    """The working tree's results under the committed recipe: pull, then retrain what is stale.

    The working tree must hold no uncommitted change to tracked files: the report compares
    commits.
    """
    if changes := changed_files(repo):
        raise RevisionError(f"the working tree has uncommitted changes ({', '.join(changes[:5])}); "
                            "commit or stash them: the report compares commits")
    dvc(repo, "pull", "--allow-missing")
    ran = ran_stages(dvc(repo, "repro", with_stderr=True, own_store=True))
    return Made(reader(repo, None), tuple(ran))


def made_with_profile(
    repo: Path, commit: str, profile: str, overrides: Mapping[str, Any], folder: Path
) -> Made:
    """Results of `commit` under a profile, from `folder`/<commit>-<profile>-<digest> when a
    run made them before, else made now in a clone sharing the repository's DVC cache."""
    kept = folder / f"{commit[:12]}-{profile}-{digest(overrides)}"
    if (kept / "dvc.lock").is_file():
        return Made(folder_reader(kept), reused=True)
    cache = dvc(repo, "cache", "dir").strip().splitlines()[-1]
    with tempfile.TemporaryDirectory(prefix="catsdogs-pr-") as tmp:
        clone = clone_at(repo, commit, Path(tmp) / "repo")
        dvc(clone, "cache", "dir", "--local", cache)
        params_file = clone / "params.yaml"
        params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
        params_file.write_text(yaml.safe_dump(apply_profile(params, overrides), sort_keys=False),
                               encoding="utf-8")
        ran = tuple(ran_stages(dvc(clone, "repro", with_stderr=True, own_store=True)))
        with atomic_dir(kept) as out:
            for name in KEPT:
                source = clone / name
                if source.is_dir():
                    shutil.copytree(source, out / name)
                elif source.is_file():
                    shutil.copy2(source, out / name)
    return Made(folder_reader(kept), ran=ran)
