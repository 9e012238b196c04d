"""Results for a pull-request report, made like for like at the base and the head, on one machine.

Two ways to make them:
- as committed (`committed`): the recipe in params.yaml. The head's outputs come from the DVC
  remote (`dvc pull`) and `dvc repro` retrains what the change made stale; the base's numbers
  are the metrics/ and dvc.lock committed with it.
- under a profile of profiles.yaml (e.g. `fast`): the same short recipe at both revisions,
  each in a clone that shares the repository's DVC cache, for the models the change touches
  (stage_changes, worked out before training) or, asked for, every model.
Either way, a model whose base and head numbers come from two machines (catsdogs.core.machine: the
CNNs trained from scratch end a few points apart on two kinds of CPU) is retrained here on
each side made elsewhere, forced past DVC's run cache, which would hand back the other
machine's outputs; then both sides are this machine's and the report gives its verdict.
Results made in a clone are kept in a folder by commit, profile and machine fingerprint, so
the next push of a pull request on the same kind of machine reuses its base's.
The stages log to a store of their own (the repository's or the clone's mlflow.db, kept with
the results), never to the tracking server MLFLOW_TRACKING_URI names: a report's runs,
short-recipe models among them, must not reach the team's registry.
Runs git and DVC (revisions.py); returns where the results can be read and how they were made.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catsdogs.core.atomic import atomic_dir
from catsdogs.core.machine import MACHINE_FILE
from catsdogs.core.params import entry_names
from catsdogs.reports.profiles import apply_profile, digest
from catsdogs.reports.report import plan_committed, plan_profile
from catsdogs.reports.results import LEADERBOARD_FILE, MACHINES_FILE, MODEL_FILES, Results, read_results
from catsdogs.reports.revisions import (
    RevisionError,
    changed_files,
    check_revision,
    clone_at,
    dvc,
    folder_reader,
    ran_stages,
    reader,
)
from catsdogs.reports.stage_changes import downstream, stage_views, touched_stages
from catsdogs.zoo.stages import evaluation_stage, training_stage, with_fine_tunes

logger = logging.getLogger(__name__)

# What a results folder keeps of a pipeline run: enough for results.read_results, and the
# runs' own MLflow store (params, metrics, tags; their artifacts stay in the deleted clone).
KEPT = ("dvc.lock", "params.yaml", "metrics", "mlflow.db")
# Beside them: which models the folder holds (null: every one) and which of them were
# retrained on this machine past DVC's run cache.
MADE_FILE = "made.json"
# Rounds of retraining until no model's two sides come from two machines: one is enough
# unless a fine-tune's parent came back bit-identical and the fine-tune kept its old machine.
ROUNDS = 3


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


@dataclass(frozen=True)
class Outcome:
    """Both sides of a report, made, and what the report says of how: the plan it logged
    before training, per side the machine records of numbers it retrained here, the models
    it did not train (nothing they depend on changed) and those only the base has."""

    base: Made
    head: Made
    plan: str
    replaced: dict[str, dict[str, dict]] = field(default_factory=dict)
    untouched: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


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


def _profiled(clone: Path, overrides: Mapping[str, Any] | None) -> dict:
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
        params = _profiled(clone, overrides)
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


def touched_by_change(repo: Path, base: str, head: str,
                      overrides: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The stages the change from commit `base` to `head` touches with the profile's
    `overrides` applied at both (stage_changes), each with why; read from two clones, before
    anything runs."""
    with tempfile.TemporaryDirectory(prefix="catsdogs-plan-") as tmp:
        views = {}
        for side, commit in (("base", base), ("head", head)):
            clone = clone_at(repo, commit, Path(tmp) / side)
            _profiled(clone, overrides)
            views[side] = stage_views(clone)
    return touched_stages(views["base"], views["head"])


def models_touched(params: Mapping[str, Any], touched: Mapping[str, Any]) -> list[str]:
    """The zoo entries of `params` whose training or evaluation is among `touched`."""
    return [m for m in entry_names(params)
            if {training_stage(params, m), evaluation_stage(params, m)} & set(touched)]


def made_elsewhere(base: Results, head: Results, here: str,
                   compared: Collection[str] | None = None) -> dict[str, set[str]]:
    """Per side, the models to retrain here: of the `compared` ones (None: every model both
    sides have), each side not made on this machine (fingerprint `here`). Two sides made on
    one other machine are retrained too: DVC's run cache hands back what any machine made,
    and the report's numbers are this machine's. A side that records no machine (made
    before machines were recorded) may come from any: it is retrained."""
    todo: dict[str, set[str]] = {"base": set(), "head": set()}
    for model in set(base.models) & set(head.models):
        if compared is not None and model not in compared:
            continue
        for side, results in (("base", base), ("head", head)):
            if results.machine.get(model, {}).get("fingerprint") != here:
                todo[side].add(model)
    return todo


def like_for_like(
    make: Mapping[str, Callable[[Collection[str]], Made]], made: dict[str, Made], here: str,
    compared: Collection[str] | None = None,
) -> tuple[dict[str, Made], dict[str, dict[str, dict]]]:
    """Remake each side (`make[side](every model to have retrained here)`) until every
    `compared` model's two sides (None: every model's) were made on this machine; `made`
    holds each side as first made. Returns the sides, and per side the machine records of
    the numbers each retrained model replaced."""
    replaced: dict[str, dict[str, dict]] = {"base": {}, "head": {}}
    for _ in range(ROUNDS):
        results = {side: made[side].results() for side in ("base", "head")}
        todo = made_elsewhere(results["base"], results["head"], here, compared)
        if not any(todo.values()):
            break
        for side, models in todo.items():
            if not models:
                continue
            logger.info("%s: %s made on another machine; retraining here", side,
                        ", ".join(sorted(models)))
            for model in models:
                replaced[side].setdefault(model, results[side].machine.get(model, {}))
            previous = made[side]
            again = make[side](sorted(models | set(previous.retrained)))
            made[side] = Made(again.read, (*previous.ran, *again.ran), again.reused,
                              tuple(sorted(set(again.retrained) | set(previous.retrained))))
    else:
        left = made_elsewhere(made["base"].results(), made["head"].results(), here, compared)
        if any(left.values()):
            logger.warning("still made on two machines after %d rounds: %s", ROUNDS,
                           ", ".join(sorted(set().union(*left.values()))))
    return made, replaced


def report_as_committed(repo: Path, base_commit: str, results_dir: Path,
                        here: str) -> Outcome:
    """Both sides under the committed recipe: the head in the working tree (pulled, then
    `dvc repro`), the base as committed. The models the change touches, or leaves stale, are
    compared, each side made elsewhere retrained here; the others are reported untouched."""
    params = yaml.safe_load(reader(repo, None)("params.yaml") or "") or {}
    pending = prepare_head(repo)
    stale_models = models_touched(params, pending)
    touched = touched_by_change(repo, base_commit, check_revision(repo, "HEAD"), None)
    compared = [m for m in entry_names(params)
                if m in stale_models or m in models_touched(params, touched)]
    plan = plan_committed([training_stage(params, m) for m in stale_models],
                          [training_stage(params, m) for m in compared])
    logger.info(plan)
    kept = kept_folder(results_dir, base_commit, "committed", {}, here)
    done: set[str] = set()

    def retrain_head(models: Collection[str]) -> Made:
        # In place: what an earlier round retrained here stays retrained.
        new = [m for m in models if m not in done]
        done.update(new)
        return Made(reader(repo, None), retrain_here(repo, new), retrained=tuple(sorted(done)))

    make = {"base": lambda models: made_in_clone(repo, base_commit, kept, pull=True,
                                                 retrain=models),
            "head": retrain_head}
    made = {"base": Made(reader(repo, base_commit)), "head": made_as_committed(repo)}
    made, replaced = like_for_like(make, made, here, compared)
    untouched = tuple(m for m in entry_names(params) if m not in compared)
    return Outcome(made["base"], made["head"], plan, replaced, untouched)


def report_under_profile(
    repo: Path, commits: Mapping[str, str], profile: str, overrides: Mapping[str, Any],
    results_dir: Path, here: str, *, every_model: bool = False,
) -> Outcome:
    """Both sides under a profile, each in a clone: the models the change touches (all of
    them with `every_model`); each model made on two machines retrained here."""
    params = {side: apply_profile(yaml.safe_load(reader(repo, commit)("params.yaml") or "") or {},
                                  overrides) for side, commit in commits.items()}
    touched = touched_by_change(repo, commits["base"], commits["head"], overrides)
    trained = None if every_model else models_touched(params["head"], touched)
    untouched = () if trained is None else tuple(
        m for m in entry_names(params["head"]) if m not in trained)
    removed = tuple(m for m in entry_names(params["base"]) if m not in entry_names(params["head"]))
    plan = plan_profile(profile, touched, trained, untouched)
    logger.info(plan)

    kept = {side: kept_folder(results_dir, commits[side], profile, overrides, here)
            for side in commits}

    def maker(side: str, seed: Path | None = None) -> Callable[[Collection[str]], Made]:
        return lambda models: made_in_clone(repo, commits[side], kept[side], overrides=overrides,
                                            retrain=models, models=trained, seed=seed)

    make = {side: maker(side) for side in commits}
    # The head starts from the base's run: what the change did not touch is not run again.
    made = {"base": make["base"](())}
    made["head"] = maker("head", seed=kept["base"])(())
    made, replaced = like_for_like(make, made, here, trained)
    return Outcome(made["base"], made["head"], plan, replaced, untouched, removed)
