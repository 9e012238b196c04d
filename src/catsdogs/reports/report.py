"""The report's Markdown (`catsdogs report`, `catsdogs pr-report`): what a change did to
params and numbers, and whether it is noise.

Renders what comparison.py found (the params table, one ModelReport per model) as the
comment: how the numbers were made (provenance.py's lines), params changed, the per-model
table with its verdicts, the models not compared and why, the curves and confusion
matrices of the models the change changed (`catsdogs.reports.charts`), the head's
leaderboard and the figures, within GitHub's comment limit where asked.
Returns Markdown; reads and writes nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from catsdogs.core.machine import summary as machine_summary
from catsdogs.evaluation.leaderboard import leaderboard_markdown
from catsdogs.evaluation.stats import CONFIDENCE, SIGNIFICANCE
from catsdogs.reports import charts
from catsdogs.reports.comparison import UNTOUCHED, ModelReport
from catsdogs.reports.results import Results

# GitHub refuses a comment longer than this (characters); the workflow adds a marker and a
# link to the run's artifact, for which the report leaves room.
COMMENT_LIMIT = 65_536
COMMENT_ROOM_LEFT = 1_000


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
