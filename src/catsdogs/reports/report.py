"""The pull-request report: what a change did to params and numbers, and whether it is noise.

Takes two Results (the base's and the head's, see results.py) and says, per model: the
validation and test accuracy at each with its 95% interval, and, on the same test photos,
how many the head fixed and broke, the exact McNemar p-value and a verdict. A model whose two
sets of numbers were made under settings that differ in a way the pull request did not
cause (a profile on one side only, a stale dvc.lock) is named, with those settings, and not
compared; so is one whose two sets were made on different machines (`catsdogs.core.machine`).
Returns Markdown; reads and writes nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from catsdogs.core.machine import summary as machine_summary
from catsdogs.core.params import flatten
from catsdogs.evaluation.leaderboard import leaderboard_markdown
from catsdogs.evaluation.stats import (
    CONFIDENCE,
    SIGNIFICANCE,
    PairedComparison,
    compare_paired,
    wilson_interval,
)
from catsdogs.reports import charts
from catsdogs.reports.profiles import describe
from catsdogs.reports.results import DATA_PREFIX, Results

# The verdict of a model whose base and head numbers come from different machines.
OTHER_MACHINES = "not comparable: made on different machines"
# The verdict of a model a pull-request report did not train: nothing it depends on changed.
UNTOUCHED = "unchanged: nothing it depends on changed"
# GitHub refuses a comment longer than this (characters); the workflow adds a marker and a
# link to the run's artifact, for which the report leaves room.
COMMENT_LIMIT = 65_536
COMMENT_ROOM_LEFT = 1_000
# The params sections whose change may change the photos a model sees, and the folder of
# the weights each architecture starts from (`pretrained.<arch>` fetches them).
DATA_SECTIONS = ("download.", "split.")
PRETRAINED_DIR = "data/pretrained/"


def param_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> pd.DataFrame:
    """One row per params.yaml key whose value differs: param, base and head value."""
    old, new = flatten(base), flatten(head)
    rows = [{"param": key, "base": old.get(key, "(absent)"), "head": new.get(key, "(absent)")}
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    # dtype object: a column of whole numbers beside floats stays as written (128, not 128.0).
    return pd.DataFrame(rows, columns=["param", "base", "head"], dtype=object)


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with the number of images it counts, and its 95% Wilson interval."""

    value: float
    total: int

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(round(self.value * self.total), self.total)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.4f} ({low:.3f}-{high:.3f})"


@dataclass(frozen=True)
class ModelReport:
    """One model at base and head: its accuracies, and the paired test comparison or why none."""

    model: str
    base_val: Accuracy | None = None
    head_val: Accuracy | None = None
    base_test: Accuracy | None = None
    head_test: Accuracy | None = None
    paired: PairedComparison | None = None
    unexplained: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # (base, head) machine records, where they differ.
    machines: tuple[dict, dict] | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        if self.paired is None:
            return "no paired predictions"
        unchanged = self.paired.fixed == self.paired.broken == 0 and (
            self.base_val and self.head_val and self.base_val.value == self.head_val.value)
        return "unchanged" if unchanged else self.paired.verdict


def _accuracies(results: Results, model: str) -> tuple[Accuracy | None, Accuracy | None]:
    train, evaluation = results.train.get(model), results.evaluation.get(model)
    splits = (results.data or {}).get("splits", {})
    val = Accuracy(train["val_accuracy"], splits.get("validation", {}).get("total", 0)) if train else None
    test = Accuracy(evaluation["accuracy"], evaluation.get("count", 0)) if evaluation else None
    return val, test


def _input_change_explained(path: str, changed: set[str]) -> bool:
    """Whether params the pull request changed explain other data at `path`: the pretrained
    weights of an architecture (data/pretrained/<arch>) by its `pretrained.<arch>` entry, the
    photos and the split by the `download` and `split` sections."""
    if path.startswith(PRETRAINED_DIR):
        section = f"pretrained.{path[len(PRETRAINED_DIR):].split('/')[0]}"
        return any(key == section or key.startswith(f"{section}.") for key in changed)
    return any(key.startswith(DATA_SECTIONS) for key in changed)


def _unexplained(base: Results, head: Results, model: str, changed: set[str]) -> dict[str, tuple]:
    """Settings the model's two sets of numbers were made under that differ, and that the
    pull request did not change (its changed params keys are `changed`)."""
    old, new = base.recipe.get(model, {}), head.recipe.get(model, {})
    differing = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or key in changed:
            continue
        if key.startswith(DATA_PREFIX) and _input_change_explained(key[len(DATA_PREFIX):],
                                                                   changed):
            continue
        differing[key] = (old.get(key, "(absent)"), new.get(key, "(absent)"))
    return differing


def _machines(base: Results, head: Results, model: str) -> tuple[dict, dict] | None:
    """The two machine records of `model`, when both are known and their fingerprints differ."""
    old, new = base.machine.get(model), head.machine.get(model)
    if not old or not new or old.get("fingerprint") == new.get("fingerprint"):
        return None
    return old, new


def _paired(base: Results, head: Results, model: str) -> PairedComparison | None:
    old, new = base.predictions.get(model), head.predictions.get(model)
    if old is None or new is None:
        return None
    both = old.merge(new, on="path", suffixes=("_base", "_head"))
    if both.empty:
        return None
    return compare_paired(list(both["actual_base"] == both["predicted_base"]),
                          list(both["actual_head"] == both["predicted_head"]))


def compare_models(base: Results, head: Results, changed: set[str],
                   untouched: Sequence[str] = (), removed: Sequence[str] = ()) -> list[ModelReport]:
    """A ModelReport per model at either revision: head's order first, then removed ones.
    `untouched` models were not trained for the report, as nothing they depend on changed:
    they get the base's numbers where known, none made up for the head, and UNTOUCHED;
    `removed` ones are in the base's zoo only, with or without numbers."""
    reports = []
    for model in dict.fromkeys([*head.models, *untouched, *base.models, *removed]):
        base_val, base_test = _accuracies(base, model)
        head_val, head_test = _accuracies(head, model)
        numbers = {"base_val": base_val, "head_val": head_val, "base_test": base_test,
                   "head_test": head_test}
        if model in untouched:
            reports.append(ModelReport(model, base_val=base_val, base_test=base_test,
                                       note=UNTOUCHED))
        elif model in removed or (model in base.models and model not in head.models):
            reports.append(ModelReport(model, **numbers, note="removed: no head numbers"))
        elif model not in base.models:
            reports.append(ModelReport(model, **numbers, note="new: no base numbers"))
        elif differing := _unexplained(base, head, model, changed):
            reports.append(ModelReport(model, **numbers, unexplained=differing,
                                       note="not comparable"))
        elif machines := _machines(base, head, model):
            # The CNNs trained from scratch move by points between kinds of CPU: a difference
            # here may be the hardware's, not the change's.
            reports.append(ModelReport(model, **numbers, machines=machines, note=OTHER_MACHINES))
        else:
            reports.append(ModelReport(model, **numbers, paired=_paired(base, head, model)))
    return reports


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _change(report: ModelReport) -> str:
    if report.note or not (report.base_test and report.head_test):
        return "-"
    return f"{report.head_test.value - report.base_test.value:+.4f}"


def models_table(reports: Sequence[ModelReport]) -> str:
    """The per-model table; numbers of models not comparable are shown, deltas are not."""
    rows = []
    for r in reports:
        paired = r.paired if not r.note else None
        rows.append({
            "model": r.model,
            "validation, base": _cell(r.base_val), "validation, head": _cell(r.head_val),
            "test, base": _cell(r.base_test), "test, head": _cell(r.head_test),
            "test change": _change(r),
            "photos fixed": _cell(paired and paired.fixed),
            "photos broken": _cell(paired and paired.broken),
            "McNemar p": "-" if paired is None else f"{paired.p_value:.3g}",
            "verdict": r.verdict,
        })
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _history_changed(base: Results, head: Results, model: str) -> bool:
    old, new = base.history.get(model), head.history.get(model)
    if old is None or new is None:
        return old is not new
    columns = ["epoch", *(column for column, _ in charts.CURVES)]
    return not old[columns].reset_index(drop=True).equals(new[columns].reset_index(drop=True))


def confusion_matrices(base: Results, head: Results, model: str) -> dict[str, Any]:
    """`model`'s test confusion matrix at the base and at the head (None where unknown)."""
    return {side: (results.evaluation.get(model) or {}).get("confusion_matrix")
            for side, results in (("base", base), ("head", head))}


def changed_models_charts(reports: Sequence[ModelReport], base: Results, head: Results,
                          labels: Sequence[str]) -> dict[str, str]:
    """Per model the change changed (trained for the report, and with other curves or other
    test predictions at the head than at the base): its curves and confusion matrices, base
    against head, as Markdown a comment shows (`catsdogs.reports.charts`)."""
    drawn = {}
    for r in reports:
        if r.note == UNTOUCHED:
            continue
        matrices = confusion_matrices(base, head, r.model)
        if not _history_changed(base, head, r.model) and matrices["base"] == matrices["head"] \
                and not (r.paired and (r.paired.fixed or r.paired.broken)):
            continue
        histories = {"base": base.history.get(r.model), "head": head.history.get(r.model)}
        drawn[r.model] = "\n".join([
            *charts.curves(r.model, histories), "",
            "Test confusion matrices:", "", charts.confusion_table(matrices, labels)])
    return drawn


def render(
    *,
    title: str,
    provenance: Sequence[str],
    params: pd.DataFrame,
    reports: Sequence[ModelReport],
    leaderboard: pd.DataFrame | None,
    model_charts: Mapping[str, str] | None = None,
    figures: Sequence[str] = (),
    limit: int | None = None,
) -> str:
    """The report's Markdown: how the numbers were made, params changed, per-model verdicts,
    models not compared and why, the changed models' charts (`changed_models_charts`), the
    head's leaderboard, figures (image links). Within `limit` characters, where given: the
    last models' charts are left out, and said so, until it fits."""
    model_charts = dict(model_charts or {})
    left_out: list[str] = []
    while True:
        markdown = _render(title, provenance, params, reports, leaderboard, model_charts,
                           left_out, figures)
        if limit is None or len(markdown) <= limit:
            return markdown
        if not model_charts:
            cut = "\n\n(Cut here to fit GitHub's comment limit: the whole report is in the artifact.)"
            return markdown[:limit - len(cut)] + cut
        left_out.insert(0, model_charts.popitem()[0])


def _render(
    title: str, provenance: Sequence[str], params: pd.DataFrame,
    reports: Sequence[ModelReport], leaderboard: pd.DataFrame | None,
    model_charts: Mapping[str, str], left_out: Sequence[str], figures: Sequence[str],
) -> str:
    lines = [f"# {title}", "", *provenance, ""]
    lines += ["## Params this change sets", ""]
    if params.empty:
        lines += ["No parameter changes.", ""]
    else:
        lines += [params.astype(str).to_markdown(index=False, disable_numparse=True), ""]
    lines += ["## Accuracy per model", ""]
    if not reports:
        lines += ["No results at either revision yet.", ""]
    else:
        percent = f"{CONFIDENCE:.0%}"
        lines += [models_table(reports), "",
                  f"Accuracies with their {percent} interval (Wilson). The verdict compares "
                  "the two revisions' predictions on the same test photos: *fixed* photos the "
                  "head gets right and the base got wrong, *broken* the reverse; p is the exact "
                  f"McNemar test, and below {SIGNIFICANCE} a change is better or worse, else "
                  "within noise.", ""]
        blocked = [r for r in reports if r.unexplained]
        if blocked:
            lines += ["## Not compared", "",
                      "These models' base and head numbers were made under settings that "
                      "differ in ways this change does not explain, so no deltas are shown:", ""]
            for r in blocked:
                settings = "; ".join(f"`{key}` {old} (base) vs {new} (head)"
                                     for key, (old, new) in r.unexplained.items())
                lines += [f"- {r.model}: {settings}"]
            lines += [""]
        elsewhere = [r for r in reports if r.machines]
        if elsewhere:
            lines += ["## Made on different machines", "",
                      "Base and head trained these models on different machines (CPU, oneDNN "
                      "instruction set, cores or versions). Each machine repeats its own numbers "
                      "exactly, but models trained from scratch end a few points apart on "
                      "another kind of CPU, so no verdict is given. `catsdogs pr-report --base "
                      "<base>` gives one: it retrains each side made elsewhere on the machine it "
                      "runs on.", ""]
            for r in elsewhere:
                old, new = r.machines
                lines += [f"- {r.model}: base {machine_summary(old)}; head {machine_summary(new)}"]
            lines += [""]
    if model_charts or left_out:
        lines += ["## Curves and confusion matrices of the models this change changed", ""]
        for model, markdown in model_charts.items():
            lines += [f"### {model}", "", markdown, ""]
        if left_out:
            lines += [f"Left out to keep the comment within GitHub's {COMMENT_LIMIT:,} "
                      f"characters: {', '.join(left_out)} (their figures are in the report's "
                      "artifact).", ""]
    if leaderboard is not None:
        lines += ["## Leaderboard (head)", "", leaderboard_markdown(leaderboard), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def stale_results(stale: Mapping[str, Sequence[str]]) -> list[str]:
    """The report's opening note on the committed results the head leaves stale (its
    dvc.lock against its own code and params: revisions.stale_at), with the refresh."""
    if not stale:
        return []
    stages = ", ".join(f"`{stage}`" for stage in stale)
    lines = [f"> **Stale committed results.** This branch changes what {stages} compute"
             f"{'s' if len(stale) == 1 else ''} (and so what depends on them), but its dvc.lock and "
             "metrics/ are still the old ones. Before merging, on the machine that makes the "
             "project's results of record: `dvc repro && dvc push`, then commit `dvc.lock` and "
             "`metrics/`.", ">"]
    for stage, changes in stale.items():
        shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
        lines.append(f"> - `{stage}`: {shown}")
    return [*lines, ""]


def made_where(base: Results, head: Results, here: Mapping[str, str],
               replaced: Mapping[str, Mapping[str, dict]],
               ran: Mapping[str, Sequence[str]]) -> list[str]:
    """Where each model's two sides were made: this machine or another, and which side was
    (re)trained here and why. `replaced`: per side, the machine records of the numbers that
    were retrained here; `ran`: per side, the stages run."""
    lines = [f"This machine: {machine_summary(here)}.", ""]
    for model in dict.fromkeys([*head.models, *base.models]):
        records = {"base": base.machine.get(model), "head": head.machine.get(model)}
        sides = []
        for side, record in records.items():
            if record is None:
                sides.append(f"{side}: no machine recorded")
                continue
            where = "here" if record.get("fingerprint") == here.get("fingerprint") else \
                machine_summary(record)
            stage = next((s for s in ran.get(side, ()) if s.endswith(f"@{model}")
                          and s.startswith(("train@", "finetune@"))), None)
            if model in replaced.get(side, {}):
                why = f"retrained here: its numbers had been made on {machine_summary(replaced[side][model])}"
            elif stage:
                why = f"trained here by `{stage}`"
            else:
                why = "as it was"
            sides.append(f"{side} {where} ({why})")
        lines.append(f"- `{model}`: " + "; ".join(sides))
    return [*lines, ""]


def _stages(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def plan_committed(pending: Sequence[str], compared: Sequence[str]) -> str:
    """What a report under the committed recipe will train, said before it does: the
    training stages `pending` at the head, and those of the models `compared` (the change
    touches them, or leaves them stale), each side of which is retrained wherever it was
    made on another machine."""
    return (f"Plan: the head trains {len(pending)} model(s) the change left stale"
            + (f" ({_stages(pending)})" if pending else "")
            + f"; {len(compared)} model(s) the change touches are compared"
            + (f" ({_stages(compared)})" if compared else "")
            + ", each side retrained here wherever it was made on another machine: at worst "
            f"{2 * len(compared)} trainings. The other models are unchanged: nothing they "
            "depend on changed.")


def plan_profile(profile: str, touched: Mapping[str, Sequence[str]],
                 trained: Sequence[str] | None, untouched: Sequence[str]) -> str:
    """What a report under a profile will train (None: every model), and why, said before
    it does: the training stages the change touches, with their first reasons."""
    if trained is None:
        return (f"Plan: the `{profile}` profile's whole recipe at both revisions, every model; "
                "each is trained once per side, and again here where DVC's run cache hands back "
                "outputs another machine made.")
    why = ", ".join(f"`{stage}` ({'; '.join(reasons[:2])})" for stage, reasons in touched.items()
                    if stage.split("@")[0] in ("train", "finetune"))
    return (f"Plan: under the `{profile}` profile the change touches {why or 'no training'}. "
            f"Trained at both revisions: {', '.join(trained) or 'none'}; not trained, as nothing "
            f"they depend on changed: {', '.join(untouched) or 'none'}. Each is trained once per "
            "side, and again here where DVC's run cache hands back outputs another machine made.")


def numbers_committed(base_retrained: Sequence[str], head_ran: Sequence[str]) -> str:
    """How a report under the committed recipe made its numbers."""
    base = "its committed results" + (
        f", with {', '.join(base_retrained)} retrained here (in a clone)" if base_retrained else "")
    return (f"Numbers: the recipe as committed (params.yaml). Base: {base}. Head: outputs pulled "
            f"from the DVC remote, then `dvc repro` ran {_stages(head_ran) or 'nothing'}.")


def numbers_profile(profile: str, overrides: Mapping[str, Any], kept: str,
                    sides: Mapping[str, tuple[bool, Sequence[str]]]) -> str:
    """How a report under a profile made its numbers; `sides`: per side, (reused from the
    `kept` folder, stages run)."""

    def how(side: str) -> str:
        reused, ran = sides[side]
        return f"{side}: reused from {kept}" if reused else f"{side}: ran {_stages(ran) or 'nothing'}"

    return (f"Numbers: the `{profile}` profile ({describe(overrides)}), run at both revisions; a "
            "short recipe, so lower than the committed results. "
            f"{how('base').capitalize()}; {how('head')}.")
