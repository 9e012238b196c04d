"""The leaderboard and the champion: ranked by validation, never by test."""

from __future__ import annotations

import pandas as pd
import pytest

from catsdogs.compare import champion, leaderboard, to_markdown

DATA = {"splits": {"validation": {"baseline_accuracy": 0.5, "total": 800},
                  "test": {"baseline_accuracy": 0.5, "total": 200}}}


def metrics(val: float, test: float) -> tuple[dict, dict]:
    return ({"val_accuracy": val, "best_val_accuracy": val, "epochs": 3, "seconds": 9.0,
             "images_per_second": 100.0, "params": {"total": 10}},
            {"accuracy": test, "roc_auc": 0.9, "f1": 0.8, "count": 200})


def test_champion_is_chosen_by_validation_not_test() -> None:
    pairs = {"a": metrics(0.90, 0.99), "b": metrics(0.95, 0.80), "c": metrics(0.70, 0.70)}
    board = leaderboard({k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}, DATA)
    assert list(board["model"]) == ["b", "a", "c", "majority_baseline"]
    assert list(board["rank"][:3]) == [1, 2, 3] and pd.isna(board["rank"].iloc[3])
    assert champion(board) == "b"
    assert board.loc[board.model == "majority_baseline", "test_accuracy"].item() == 0.5
    page = to_markdown(board, "b", "7")
    assert "**b**" in page and "version 7" in page and "| majority_baseline |" in page


def test_missing_test_metrics_are_named() -> None:
    train, evaluation = metrics(0.9, 0.9)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        leaderboard({"a": train, "b": train}, {"a": evaluation}, DATA)


def test_each_accuracy_carries_its_wilson_interval() -> None:
    train, evaluation = metrics(0.975, 0.575)
    board = leaderboard({"a": train}, {"a": evaluation}, DATA)
    row = board.iloc[0]
    assert (round(row.test_low, 4), round(row.test_high, 4)) == (0.5057, 0.6415)  # 115 of 200
    assert row.val_low < 0.975 < row.val_high and row.val_high - row.val_low < 0.025  # 780 of 800
    page = to_markdown(board, "a", None)
    assert "| 0.5750 (0.506-0.641) |" in page and "95% interval (Wilson)" in page
