"""A model's base-against-head curves and confusion matrices as text a GitHub comment shows.

GitHub shows no local image and no data URI in a comment, but it renders Mermaid: each
curve is a Mermaid `xychart-beta` block (epochs as integers on the x axis), and the
confusion matrices are a Markdown table. Takes the two revisions' histories
(`metrics/history/<model>.csv`) and confusion matrices; returns Markdown, reads and
writes nothing. The PNG figures (`catsdogs.reports.figures`) stay for local reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

# The lines' colours, in the order the series are drawn; the PNG figures use the same
# (matplotlib's tab:gray for the base, tab:blue for the head). xychart-beta draws no legend
# on GitHub, so the text under each chart names them.
SIDE_COLOURS = {"base": "#7f7f7f", "head": "#1f77b4"}
COLOUR_NAMES = {"#7f7f7f": "grey", "#1f77b4": "blue"}
# What each chart plots: a history column and how to say it.
CURVES = (("val_accuracy", "validation accuracy"), ("val_loss", "validation loss"))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _accuracy_axis(values: Sequence[float]) -> tuple[float, float, str]:
    """0 to 1, or zoomed to the tenths the values span (and the axis title says so): a
    model at 0.96-0.99 would otherwise draw a flat line at the top."""
    # Rounded first: 0.6 * 10 is 6.000000000000001, whose ceiling is 7.
    low = math.floor(round(min(values) * 10, 6)) / 10
    high = min(1.0, math.ceil(round(max(values) * 10, 6)) / 10)
    if high <= low:
        high = min(1.0, low + 0.1)
        low = high - 0.1
    zoom = "" if (low, high) == (0.0, 1.0) else f", zoomed: {low:g} to {high:g}"
    return low, high, zoom


def _loss_axis(values: Sequence[float]) -> tuple[float, float, str]:
    """From 0 to a round number above the largest loss."""
    top = max(values) * 1.05 or 1.0
    step = 10 ** math.floor(math.log10(top)) / 2
    return 0.0, math.ceil(top / step) * step, ""


def curve_chart(model: str, series: Mapping[str, Sequence[float]], column: str,
                label: str) -> str:
    """One Mermaid xychart of `column` per epoch, a line per side in `series` (each as
    long as the others, two epochs or more: xychart-beta leaves a one-point line blank
    and a shorter line's missing epochs undefined)."""
    lengths = {len(values) for values in series.values()}
    if len(lengths) != 1 or lengths.pop() < 2:
        raise ValueError(f"{model}: curves of one length, 2 or more, expected; got "
                         f"{ {side: len(v) for side, v in series.items()} }")
    values = [v for side in series.values() for v in side]
    low, high, zoom = (_accuracy_axis if "accuracy" in column else _loss_axis)(values)
    epochs = len(next(iter(series.values())))
    palette = ", ".join(SIDE_COLOURS[side] for side in series)
    lines = [
        "```mermaid",
        '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%',
        "xychart-beta",
        f'    title "{model.replace(chr(34), chr(39))}: {label} per epoch"',
        f'    x-axis "epoch" [{", ".join(str(e) for e in range(1, epochs + 1))}]',
        f'    y-axis "{label}{zoom}" {_number(low)} --> {_number(high)}',
    ]
    lines += [f'    line "{side}" [{", ".join(_number(v) for v in side_values)}]'
              for side, side_values in series.items()]
    return "\n".join([*lines, "```"])


def _legend(sides: Sequence[str]) -> str:
    return ", ".join(f"{side} {COLOUR_NAMES[SIDE_COLOURS[side]]}" for side in sides)


def curves(model: str, histories: Mapping[str, pd.DataFrame | None]) -> list[str]:
    """Markdown lines: `model`'s validation accuracy and loss per epoch, base against head,
    in one chart each (one per side where their epochs differ), and a sentence for a side
    with a single epoch or no history."""
    lines: list[str] = []
    drawn: dict[str, pd.DataFrame] = {}
    for side, history in histories.items():
        if history is None or history.empty:
            lines.append(f"No history at the {side}.")
        elif len(history) == 1:
            last = history.iloc[-1]
            lines.append(f"The {side} trained 1 epoch: validation accuracy "
                         f"{_number(last['val_accuracy'])}, loss {_number(last['val_loss'])}.")
        else:
            drawn[side] = history
    if not drawn:
        return lines
    groups = [list(drawn)]
    if len({len(history) for history in drawn.values()}) > 1:
        lines.append("Base and head trained " + " and ".join(
            f"{len(history)} epochs ({side})" for side, history in drawn.items())
            + ": a chart each.")
        groups = [[side] for side in drawn]
    for sides in groups:
        for column, label in CURVES:
            series = {side: list(drawn[side][column]) for side in sides}
            lines += ["", curve_chart(model, series, column, label)]
    lines += ["", f"Lines: {_legend(list(drawn))}."]
    return lines[1:] if lines[0] == "" else lines


def confusion_table(matrices: Mapping[str, Sequence[Sequence[int]] | None],
                    labels: Sequence[str]) -> str:
    """One Markdown table of test-set confusion matrices side by side: rows the actual
    label, a column per (predicted label, side); a side without one is left out."""
    known = {side: m for side, m in matrices.items() if m is not None}
    if not known:
        return "No test confusion matrix at either side."
    header = ["actual \\ predicted", *(f"{predicted} ({side})" for side in known
                                       for predicted in labels)]
    rows = [[f"**{actual}**", *(str(matrix[i][j]) for matrix in known.values()
                                for j in range(len(labels)))]
            for i, actual in enumerate(labels)]
    table = [header, ["---"] + [":-:"] * (len(header) - 1), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in table)
