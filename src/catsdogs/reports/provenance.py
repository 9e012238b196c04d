"""The report's opening lines: how its numbers were made, said in sentences.

The plan a pull-request report logs before it trains (plan_committed, plan_profile), how
each side's numbers were made (numbers_committed, numbers_profile), the note on committed
results the head leaves stale, and where each model's two sides were made (made_where).
Takes stage and model names, machine records (`catsdogs.core.machine`) and Results; returns
lines of Markdown for report.render's `provenance`. Reads and writes nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from catsdogs.core.machine import summary as machine_summary
from catsdogs.reports.profiles import describe
from catsdogs.reports.results import Results


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
