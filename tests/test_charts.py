"""The pull-request comment's charts: Mermaid xychart-beta blocks and confusion tables."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from catsdogs.reports.charts import confusion_table, curve_chart, curves

NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def xychart(block: str) -> dict:
    """Parse one ```mermaid block as the xychart-beta grammar GitHub renders reads it,
    failing on any line it does not know; return its parts."""
    lines = block.strip().split("\n")
    assert lines[0] == "```mermaid" and lines[-1] == "```", block
    init = re.fullmatch(r"%%\{init: (.*)\}%%", lines[1])
    assert init, lines[1]
    palette = json.loads(init.group(1))["themeVariables"]["xyChart"]["plotColorPalette"]
    assert lines[2] == "xychart-beta"
    chart: dict = {"palette": [c.strip() for c in palette.split(",")], "lines": {}}
    for line in lines[3:-1]:
        if m := re.fullmatch(r'    title "([^"]*)"', line):
            chart["title"] = m.group(1)
        elif m := re.fullmatch(r'    x-axis "([^"]*)" \[([^\]]*)\]', line):
            chart["x_title"], chart["epochs"] = m.group(1), m.group(2).split(", ")
        elif m := re.fullmatch(rf'    y-axis "([^"]*)" ({NUMBER}) --> ({NUMBER})', line):
            chart["y_title"], chart["y"] = m.group(1), (float(m.group(2)), float(m.group(3)))
        elif m := re.fullmatch(rf'    line "([^"]*)" \[((?:{NUMBER}, )*{NUMBER})\]', line):
            chart["lines"][m.group(1)] = [float(v) for v in m.group(2).split(", ")]
        else:
            pytest.fail(f"not xychart-beta: {line!r}")
    return chart


def charts_in(markdown: str) -> list[dict]:
    return [xychart(block) for block in re.findall(r"```mermaid\n.*?\n```", markdown, re.S)]


def history(epochs: int, start: float) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, epochs + 1),
                         "val_accuracy": [start + 0.01 * e for e in range(epochs)],
                         "val_loss": [0.6 - 0.05 * e for e in range(epochs)]})


def test_a_chart_per_curve_draws_base_and_head_over_integer_epochs() -> None:
    markdown = "\n".join(curves("m4", {"base": history(4, 0.95), "head": history(4, 0.96)}))
    accuracy, loss = charts_in(markdown)
    assert accuracy["epochs"] == loss["epochs"] == ["1", "2", "3", "4"]
    assert accuracy["lines"] == {"base": [0.95, 0.96, 0.97, 0.98], "head": [0.96, 0.97, 0.98, 0.99]}
    assert loss["lines"]["base"] == [0.6, 0.55, 0.5, 0.45]
    # Zoomed, and the axis says so; loss from 0 to a round number above it.
    assert accuracy["y"] == (0.9, 1.0) and "zoomed: 0.9 to 1" in accuracy["y_title"]
    assert loss["y"] == (0.0, 0.65) and loss["y_title"] == "validation loss"
    assert accuracy["palette"] == ["#7f7f7f", "#1f77b4"]
    assert "Lines: base grey, head blue." in markdown


def test_accuracies_across_the_range_keep_the_whole_axis() -> None:
    chart = xychart(curve_chart("m1", {"head": [0.05, 0.5, 0.95]}, "val_accuracy", "acc"))
    assert chart["y"] == (0.0, 1.0) and chart["y_title"] == "acc"


def test_every_value_lies_on_its_axis() -> None:
    for values in ([0.6, 0.6], [0.5, 0.51], [0.99, 1.0], [0.0, 0.02]):
        chart = xychart(curve_chart("m", {"base": values}, "val_accuracy", "a"))
        low, high = chart["y"]
        assert low <= min(values) and max(values) <= high and low < high, (values, chart["y"])


def test_sides_with_other_epoch_counts_get_a_chart_each() -> None:
    markdown = "\n".join(curves("m1", {"base": history(3, 0.5), "head": history(5, 0.5)}))
    drawn = charts_in(markdown)
    assert [list(c["lines"]) for c in drawn] == [["base"], ["base"], ["head"], ["head"]]
    assert [len(c["epochs"]) for c in drawn] == [3, 3, 5, 5]
    assert [c["palette"] for c in drawn] == [["#7f7f7f"]] * 2 + [["#1f77b4"]] * 2
    assert "3 epochs (base) and 5 epochs (head)" in markdown


def test_one_epoch_or_no_history_is_said_not_drawn() -> None:
    # xychart-beta draws a one-point line as nothing at all.
    markdown = "\n".join(curves("m1", {"base": None, "head": history(1, 0.55)}))
    assert charts_in(markdown) == []
    assert markdown == ("No history at the base.\n"
                        "The head trained 1 epoch: validation accuracy 0.55, loss 0.6.")
    with pytest.raises(ValueError, match=re.escape("got {'base': 1}")):
        curve_chart("m1", {"base": [0.5]}, "val_accuracy", "a")


def test_confusion_tables_put_base_and_head_side_by_side() -> None:
    table = confusion_table({"base": [[80, 20], [30, 70]], "head": [[85, 15], [25, 75]]},
                            ["cat", "dog"])
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in table.split("\n")]
    assert rows[0] == ["actual \\ predicted", "cat (base)", "dog (base)", "cat (head)", "dog (head)"]
    assert rows[2] == ["**cat**", "80", "20", "85", "15"]
    assert rows[3] == ["**dog**", "30", "70", "25", "75"]
    assert confusion_table({"base": None, "head": [[1, 0], [0, 1]]}, ["cat", "dog"]).split(
        "\n")[0] == "| actual \\ predicted | cat (head) | dog (head) |"
