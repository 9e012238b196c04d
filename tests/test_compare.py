"""The leaderboard and the champion: ranked by validation, never by test."""

from __future__ import annotations

import pandas as pd
import pytest

from catsdogs.evaluation.champion import Standing, champion_decision
from catsdogs.evaluation.leaderboard import best_model, leaderboard, to_markdown

DATA = {"splits": {"validation": {"baseline_accuracy": 0.5, "total": 800},
                  "test": {"baseline_accuracy": 0.5, "total": 200}}}


def metrics(val: float, test: float) -> tuple[dict, dict]:
    return ({"val_accuracy": val, "best_val_accuracy": val},
            {"accuracy": test, "roc_auc": 0.9, "f1": 0.8, "count": 200})


TRAINED = {"epochs": 3, "seconds": 9.0, "images_per_second": 100.0, "params": {"total": 10}}


def test_champion_is_chosen_by_validation_not_test() -> None:
    pairs = {"a": metrics(0.90, 0.99), "b": metrics(0.95, 0.80), "c": metrics(0.70, 0.70)}
    board = leaderboard({k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}, DATA)
    assert list(board["model"]) == ["b", "a", "c", "majority_baseline"]
    assert list(board["rank"][:3]) == [1, 2, 3] and pd.isna(board["rank"].iloc[3])
    assert best_model(board) == "b"
    assert board.loc[board.model == "majority_baseline", "test_accuracy"].item() == 0.5
    page = to_markdown(board, "b", "Registered as `catsdogs` version 7.")
    assert "**b**" in page and "version 7" in page and "| majority_baseline |" in page


def test_timings_and_size_come_from_the_training_record_not_the_metrics() -> None:
    train, evaluation = metrics(0.9, 0.8)
    board = leaderboard({"a": train, "b": train}, {"a": evaluation, "b": evaluation}, DATA,
                        {"a": TRAINED})
    rows = board.set_index("model")
    assert (rows.loc["a", "epochs"], rows.loc["a", "train_seconds"], rows.loc["a", "params"]) == (3, 9.0, 10)
    assert pd.isna(rows.loc["b", "epochs"]) and pd.isna(rows.loc["b", "images_per_second"])


SAME, OTHER = "a" * 64, "b" * 64


@pytest.mark.parametrize(("candidate", "incumbent", "promote", "alias", "reason"), [
    (Standing("2", 0.90, SAME), None, False, "champion", "there was no champion"),
    (Standing("2", 0.91, SAME), Standing("1", 0.90, SAME), False, "champion",
     "beats the champion, version 1, on the same validation photos: 0.9100 > 0.9000"),
    (Standing("2", 0.90, SAME), Standing("1", 0.90, SAME), False, "challenger",
     "does not beat the champion, version 1, on the same validation photos: 0.9000 vs 0.9000"),
    (Standing("2", 0.80, SAME), Standing("1", 0.90, SAME), False, "challenger", "does not beat"),
    (Standing("2", 0.99, OTHER), Standing("1", 0.90, SAME), False, "challenger",
     "validated on other photos (validation set aaaaaaaaaaaa vs bbbbbbbbbbbb)"),
    (Standing("2", 0.99, SAME), Standing("1", 0.90, None), False, "challenger", "unrecorded"),
    (Standing("2", 0.10, OTHER), Standing("1", 0.90, SAME), True, "champion",
     "promoted on purpose (--promote), replacing version 1"),
    (Standing("1", 0.90, SAME), Standing("1", 0.90, SAME), False, "champion", "already the champion"),
])
def test_only_a_better_model_on_the_same_photos_takes_the_champion_alias(
    candidate: Standing, incumbent: Standing | None, promote: bool, alias: str, reason: str
) -> None:
    decided = champion_decision(candidate, incumbent, promote=promote)
    assert decided[0] == alias and reason in decided[1]


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
    page = to_markdown(board, "a", "Not registered.")
    assert "| 0.5750 (0.506-0.641) |" in page and "95% interval (Wilson)" in page
