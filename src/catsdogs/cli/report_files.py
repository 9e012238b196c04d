"""What `catsdogs report` and `catsdogs pr-report` share: writing a report's files (the
Markdown, its PNG figures, the text a pull-request comment shows, a GitHub Actions job's
summary) and the --out and --repo options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from collections.abc import Sequence


def write_report(
    *, title: str, provenance: list[str], base, head, base_params: dict, head_params: dict,
    out: Path, untouched: Sequence[str] = (), removed: Sequence[str] = (),
) -> str:
    """Compare two Results (`untouched` models were not trained: nothing they depend on
    changed) and write the Markdown to `out`, with PNG figures beside it; write the text a
    pull-request comment can show (charts as Mermaid, no image links, within GitHub's
    limit) beside it, as <name>.comment.md, and, in a GitHub Actions job, to its summary. Return
    the Markdown."""
    import os

    from catsdogs.core.atomic import atomic_dir, write_text
    from catsdogs.data.manifest import LABELS
    from catsdogs.reports import figures
    from catsdogs.reports.comparison import compare_models, param_changes
    from catsdogs.reports.report import (
        COMMENT_LIMIT,
        COMMENT_ROOM_LEFT,
        changed_models_charts,
        confusion_matrices,
        render,
    )

    params = param_changes(base_params, head_params)
    reports = compare_models(base, head, set(params["param"]), untouched, removed)
    drawn = []
    with atomic_dir(out.parent / "figures") as tmp:
        for model in (r.model for r in reports):
            histories = {"base": base.history.get(model), "head": head.history.get(model)}
            if all(history is None for history in histories.values()):
                continue  # not trained for this report, nor kept from another
            figures.curves_compared(histories, tmp / f"{model}_curves.png",
                                    f"{model}: accuracy per epoch")
            figures.confusion_compared(confusion_matrices(base, head, model), LABELS,
                                       tmp / f"{model}_confusion.png",
                                       f"{model}: test confusion matrices")
            drawn += [f"figures/{model}_curves.png", f"figures/{model}_confusion.png"]
    sections = {"title": title, "provenance": provenance, "params": params, "reports": reports,
                "leaderboard": head.leaderboard,
                "model_charts": changed_models_charts(reports, base, head, LABELS)}
    markdown = render(**sections, figures=drawn)
    comment = render(**sections, limit=COMMENT_LIMIT - COMMENT_ROOM_LEFT)
    write_text(out, markdown)
    write_text(out.with_suffix(".comment.md"), comment)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # the job's summary page shows what the comment does
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(comment + "\n")
    return markdown


OUT = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                   default="reports/pr/report.md", show_default=True,
                   help="Markdown file to write; figures go to a figures/ folder beside it, and "
                        "what a pull-request comment shows to <name>.comment.md.")
REPO = click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path),
                    default=".", show_default=True, help="The catsdogs repository.")
