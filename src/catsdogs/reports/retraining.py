"""One side's results for a pull-request report, made on this machine: in the working tree or in a clone.

In the working tree (the head under the committed recipe): its outputs pulled from the DVC
remote, then `dvc repro` retrains what the change made stale (prepare_head, made_as_committed).
In a clone of a commit that shares the repository's DVC cache (the base, or either side under
a profile of profiles.yaml, written into the clone's params.yaml): every model, or the models
asked for (made_in_clone). Models whose numbers were made on another machine are retrained
here (retrain_here), forced past DVC's run cache, which would hand back the other machine's
outputs, and their machine records (catsdogs.core.machine) written as compare would.
Results made in a clone are kept in a folder by commit, profile and machine fingerprint, so
the next push of a pull request on the same kind of machine reuses its base's.
The stages log to a store of their own (the repository's or the clone's mlflow.db, kept with
the results), never to the tracking server MLFLOW_TRACKING_URI names: a report's runs,
short-recipe models among them, must not reach the team's registry.
Runs git and DVC (revisions.py); returns a Made: where the results can be read and how they
were made.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from catsdogs.core.atomic import atomic_dir
from catsdogs.core.machine import MACHINE_FILE
from catsdogs.reports.profiles import apply_profile, digest
from catsdogs.reports.results import LEADERBOARD_FILE, MACHINES_FILE, MODEL_FILES, Results, read_results
from catsdogs.reports.revisions import (
    RevisionError,
    changed_files,
    clone_at,
    dvc,
    folder_reader,
    ran_stages,
    reader,
)
from catsdogs.reports.stage_changes import downstream, stage_views
from catsdogs.zoo.settings import entry_names
from catsdogs.zoo.stages import evaluation_stage, training_stage, with_fine_tunes

logger = logging.getLogger(__name__)

# What a results folder keeps of a pipeline run: enough for results.read_results, and the
# runs' own MLflow store (params, metrics, tags; their artifacts stay in the deleted clone).
KEPT = ("dvc.lock", "params.yaml", "metrics", "mlflow.db")
# Beside them: which models the folder holds (null: every one) and which of them were
# retrained on this machine past DVC's run cache.
MADE_FILE = "made.json"


@dataclass(frozen=True)
class Made:
    """Where a revision's results can be read, and what it took: the stages `dvc repro` ran
    (empty when nothing was stale), whether they came from the results folder, and the
    models retrained on this machine because their numbers had been made on another."""

    read: Callable[[str], str | None]
    ran: tuple[str, ...] = ()
    reused: bool = False
    retrained: tuple[str, ...] = ()

    def results(self) -> Results:
        return read_results(self.read, [])


def retrain_here(repo: Path, models: Collection[str], *, whole: bool = True) -> tuple[str, ...]:
    """Retrain `models` in `repo` on this machine, whatever DVC's run cache holds, then run
    their evaluations; the stages run. In a `whole` pipeline the fine-tunes of a retrained
    model retrain too (they are stale, and the run cache could hand back another machine's),
    and compare runs; else only `models`, and their machines are written as compare would."""
    if not models:
        return ()
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8")) or {}
    chosen = with_fine_tunes(params, models) if whole else \
        [m for m in entry_names(params) if m in models]
    stages = [training_stage(params, m) for m in chosen]
    logger.info("retraining on this machine: %s", ", ".join(stages))
    # --single-item: only these stages, in this order (parents first); --force: past the run
    # cache. Then a repro brings their evaluations (and compare) up to date.
    ran = ran_stages(dvc(repo, "repro", "--force", "--single-item", *stages, with_stderr=True,
                         own_store=True))
    targets = [] if whole else [evaluation_stage(params, m) for m in chosen]
    ran += ran_stages(dvc(repo, "repro", *targets, with_stderr=True, own_store=True))
    if not whole:
        _record_machines(repo, chosen)
    return tuple(ran)


def _record_machines(repo: Path, models: Sequence[str]) -> None:
    """Add `models`' machines (from their model folders) to MACHINES_FILE, as compare does."""
    file = repo / MACHINES_FILE
    machines = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    for model in models:
        made = repo / "models" / model / MACHINE_FILE
        if made.is_file():
            machines[model] = json.loads(made.read_text(encoding="utf-8"))
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(machines, indent=2) + "\n", encoding="utf-8")


def prepare_head(repo: Path) -> list[str]:
    """Pull the working tree's outputs from the DVC remote; return the stages `dvc repro`
    will then run, or bring back from DVC's run cache: those `dvc status` lists and those
    downstream of them, in dvc.yaml's order.

    The working tree must hold no uncommitted change to tracked files: the report compares
    commits.
    """
    if changes := changed_files(repo):
        raise RevisionError(f"the working tree has uncommitted changes ({', '.join(changes[:5])}); "
                            "commit or stash them: the report compares commits")
    dvc(repo, "pull", "--allow-missing")
    views = stage_views(repo)
    pending = downstream(views, json.loads(dvc(repo, "status", "--json") or "{}"))
    return [stage for stage in views if stage in pending]


def made_as_committed(repo: Path) -> Made:
    """The working tree's results under the committed recipe, after prepare_head: `dvc repro`
    retrains what is stale."""
    return Made(reader(repo, None), tuple(ran_stages(dvc(repo, "repro", with_stderr=True,
                                                          own_store=True))))


def kept_folder(folder: Path, commit: str, profile: str, overrides: Mapping[str, Any],
                fingerprint: str) -> Path:
    """Where results of `commit` under `profile` made on machine `fingerprint` are kept."""
    return folder / f"{commit[:12]}-{profile}-{digest(overrides)}-{fingerprint}"


def profiled(clone: Path, overrides: Mapping[str, Any] | None) -> dict:
    """The clone's params, with the profile's `overrides` written into its params.yaml."""
    params_file = clone / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    if overrides is not None:
        params = apply_profile(params, overrides)
        params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def _keep(clone: Path, out: Path, models: Collection[str] | None) -> None:
    """Copy into `out` what a results folder keeps of `clone`: everything of KEPT; for a run
    of `models` only, no other model's metrics and no leaderboard (metrics/ is in git: the
    clone has the committed numbers of models this run did not make, of another recipe)."""
    for name in KEPT:
        source = clone / name
        if source.is_dir():
            shutil.copytree(source, out / name)
        elif source.is_file():
            shutil.copy2(source, out / name)
    if models is not None:
        params = yaml.safe_load((clone / "params.yaml").read_text(encoding="utf-8")) or {}
        others = [m for m in entry_names(params) if m not in models]
        for path in [LEADERBOARD_FILE, *(f.format(m) for m in others for f in MODEL_FILES)]:
            (out / path).unlink(missing_ok=True)


def _seed(clone: Path, seed: Path | None) -> None:
    """Start `clone` from a results folder of the same pipeline (the other side's, or this
    side's from before): its dvc.lock and metrics/, and the outputs they name from the shared
    DVC cache. Stages the two share are then up to date and do not run again, even those DVC's
    run cache cannot bring back (the download's and the split's, whose records are not cached)."""
    if seed is None or not (seed / "dvc.lock").is_file():
        return
    shutil.copy2(seed / "dvc.lock", clone / "dvc.lock")
    if (seed / "metrics").is_dir():
        shutil.copytree(seed / "metrics", clone / "metrics", dirs_exist_ok=True)
    dvc(clone, "checkout", "--allow-missing")


def made_in_clone(
    repo: Path, commit: str, kept: Path, *, overrides: Mapping[str, Any] | None = None,
    pull: bool = False, retrain: Collection[str] = (), models: Collection[str] | None = None,
    seed: Path | None = None,
) -> Made:
    """Results of `commit` (under `overrides`, a profile, when given): of every model, or of
    `models` only (their training and evaluation, and what those need). From `kept` when a run
    made them there before, with at least `retrain` retrained on this machine; else made now
    in a clone sharing the repository's DVC cache, pulling from the remote first with `pull`
    or starting from the results folder `seed` (_seed), and kept there."""
    made_file = kept / MADE_FILE
    before = json.loads(made_file.read_text(encoding="utf-8")) if made_file.is_file() else None
    if before is not None and (kept / "dvc.lock").is_file() and set(retrain) <= set(
            before["retrained"]) and (before["models"] is None or (
            models is not None and set(models) <= set(before["models"]))):
        return Made(folder_reader(kept), reused=True, retrained=tuple(before["retrained"]))
    if models is not None and before is not None and before["models"] is not None:
        models = sorted(set(models) | set(before["models"]))  # the folder keeps what it had
    cache = dvc(repo, "cache", "dir").strip().splitlines()[-1]
    with tempfile.TemporaryDirectory(prefix="catsdogs-pr-") as tmp:
        clone = clone_at(repo, commit, Path(tmp) / "repo")
        dvc(clone, "cache", "dir", "--local", cache)
        params = profiled(clone, overrides)
        if pull:
            dvc(clone, "pull", "--allow-missing")
        else:
            _seed(clone, seed if seed is not None else kept)
        if models is None:
            ran = ran_stages(dvc(clone, "repro", with_stderr=True, own_store=True))
        else:
            models = [m for m in entry_names(params) if m in models]
            targets = [evaluation_stage(params, m) for m in models]
            ran = ran_stages(dvc(clone, "repro", *targets, with_stderr=True, own_store=True)) \
                if targets else []
            _record_machines(clone, models)  # compare did not run
        ran += retrain_here(clone, retrain, whole=models is None)
        with atomic_dir(kept) as out:
            _keep(clone, out, models)
            (out / MADE_FILE).write_text(json.dumps({
                "models": None if models is None else sorted(models),
                "retrained": sorted(retrain)}) + "\n", encoding="utf-8")
    return Made(folder_reader(kept), ran=tuple(ran), retrained=tuple(retrain))
