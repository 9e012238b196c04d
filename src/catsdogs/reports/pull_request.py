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
Making one side, in the working tree or in a clone, and keeping it, is retraining.py's.
Runs git and DVC (revisions.py); returns an Outcome: where the results can be read and how
they were made.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catsdogs.reports.profiles import apply_profile
from catsdogs.reports.provenance import plan_committed, plan_profile
from catsdogs.reports.results import Results
from catsdogs.reports.retraining import (
    Made,
    kept_folder,
    made_as_committed,
    made_in_clone,
    prepare_head,
    profiled,
    retrain_here,
)
from catsdogs.reports.revisions import check_revision, clone_at, reader
from catsdogs.reports.stage_changes import models_touched, stage_views, touched_stages
from catsdogs.zoo.settings import entry_names
from catsdogs.zoo.stages import training_stage

logger = logging.getLogger(__name__)

# Rounds of retraining until no model's two sides come from two machines: one is enough
# unless a fine-tune's parent came back bit-identical and the fine-tune kept its old machine.
ROUNDS = 3


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


def touched_by_change(repo: Path, base: str, head: str,
                      overrides: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The stages the change from commit `base` to `head` touches with the profile's
    `overrides` applied at both (stage_changes), each with why; read from two clones, before
    anything runs."""
    with tempfile.TemporaryDirectory(prefix="catsdogs-plan-") as tmp:
        views = {}
        for side, commit in (("base", base), ("head", head)):
            clone = clone_at(repo, commit, Path(tmp) / side)
            profiled(clone, overrides)
            views[side] = stage_views(clone)
    return touched_stages(views["base"], views["head"])


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
