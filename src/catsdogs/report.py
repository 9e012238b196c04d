"""The pull-request report: what a change did to params and numbers, as Markdown.

Takes the JSON of `dvc params diff` and `dvc metrics diff` (dicts), the head's leaderboard
and the names of figures already drawn; returns Markdown. Reads and writes nothing itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from catsdogs.compare import leaderboard_markdown

# metrics file -> (model name, which accuracy it holds)
_TRACKED = (
    (re.compile(r"(?:^|/)metrics/train/(?P<model>[^/]+)\.json$"), "val_accuracy", "val_accuracy"),
    (re.compile(r"(?:^|/)metrics/eval/(?P<model>[^/]+)\.json$"), "accuracy", "test_accuracy"),
)


def params_table(params_diff: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per changed param: file, param, old and new value."""
    rows = [
        {"param": name, "old": change.get("old"), "new": change.get("new"), "file": path}
        for path, changes in params_diff.items()
        for name, change in sorted(changes.items())
    ]
    return pd.DataFrame(rows, columns=["param", "old", "new", "file"])


def metrics_table(metrics_diff: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per model: validation and test accuracy, old and new, absolute and relative change."""
    rows = []
    for path, values in metrics_diff.items():
        for pattern, key, label in _TRACKED:
            match = pattern.search(path)
            if match and key in values:
                old, new = values[key].get("old"), values[key].get("new")
                change = new - old if old is not None and new is not None else None
                relative = change / old if change is not None and old else None
                rows.append({"model": match["model"], "metric": label, "old": old, "new": new,
                             "change": change, "relative": relative})
    table = pd.DataFrame(rows, columns=["model", "metric", "old", "new", "change", "relative"])
    return table.sort_values(["model", "metric"], ascending=[True, False]).reset_index(drop=True)


def _number(value: Any, signed: bool = False, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if percent:
        return f"{value:+.1%}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def render(
    *,
    base: str,
    head: str,
    params: pd.DataFrame,
    metrics: pd.DataFrame,
    leaderboard: pd.DataFrame | None,
    figures: Sequence[str],
) -> str:
    """The report's Markdown: params diff, metrics diff, leaderboard, figures."""
    lines = [f"# catsdogs: {head} vs {base}", ""]
    lines += ["## Params", ""]
    if params.empty:
        lines += ["No parameter changes.", ""]
    else:
        lines += [params.astype(str).to_markdown(index=False, disable_numparse=True), ""]
    lines += ["## Accuracy per model", ""]
    if metrics.empty:
        lines += ["No metrics at either revision yet.", ""]
    else:
        if metrics["old"].isna().all():
            lines += [f"The base ({base}) has no metrics yet; these are the new numbers.", ""]
        elif (metrics["change"].fillna(0) == 0).all() and metrics["new"].notna().all():
            lines += ["No metric changes.", ""]
        shown = pd.DataFrame({
            "model": metrics["model"], "metric": metrics["metric"],
            "base": [_number(v) for v in metrics["old"]],
            "head": [_number(v) for v in metrics["new"]],
            "change": [_number(v, signed=True) for v in metrics["change"]],
            "relative": [_number(v, percent=True) for v in metrics["relative"]],
        })
        lines += [shown.to_markdown(index=False, disable_numparse=True), ""]
    if leaderboard is not None:
        lines += ["## Leaderboard (head)", "", leaderboard_markdown(leaderboard), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)
