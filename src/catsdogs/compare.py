"""The leaderboard: every model's validation and test numbers side by side, and the champion.

Reads the metrics dicts written by the train and evaluate stages and the data metrics
(for the majority-class baseline); returns a DataFrame. The champion is chosen by
validation accuracy only: choosing by test accuracy would make the test set a second
validation set and its number an optimistic one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

BASELINE = "majority_baseline"
COLUMNS = ["rank", "model", "val_accuracy", "best_val_accuracy", "test_accuracy", "test_roc_auc",
           "test_f1", "epochs", "train_seconds", "images_per_second", "params"]
INTEGER_COLUMNS = ("rank", "epochs", "params")


def leaderboard(
    train: Mapping[str, Mapping[str, Any]],
    evaluation: Mapping[str, Mapping[str, Any]],
    data: Mapping[str, Any],
) -> pd.DataFrame:
    """One row per model that has both training and test metrics, plus the baseline row.

    Sorted by validation accuracy, best first (ties: by name); the baseline comes last.
    """
    missing = sorted(set(train) ^ set(evaluation))
    if missing:
        raise ValueError(f"models with training but no test metrics, or the reverse: {missing}")
    if not train:
        raise ValueError("no model metrics to compare; run the train and evaluate stages first")
    rows = [
        {
            "model": name,
            "val_accuracy": train[name]["val_accuracy"],
            "best_val_accuracy": train[name].get("best_val_accuracy"),
            "test_accuracy": evaluation[name]["accuracy"],
            "test_roc_auc": evaluation[name].get("roc_auc"),
            "test_f1": evaluation[name].get("f1"),
            "epochs": train[name].get("epochs"),
            "train_seconds": train[name].get("seconds"),
            "images_per_second": train[name].get("images_per_second"),
            "params": train[name].get("params", {}).get("total"),
        }
        for name in train
    ]
    board = pd.DataFrame(rows).sort_values(["val_accuracy", "model"], ascending=[False, True])
    board.insert(0, "rank", range(1, len(board) + 1))
    splits = data["splits"]
    baseline = {"rank": None, "model": BASELINE,
                "val_accuracy": splits["validation"]["baseline_accuracy"],
                "test_accuracy": splits["test"]["baseline_accuracy"]}
    board = pd.concat([board, pd.DataFrame([baseline])], ignore_index=True)
    for column in INTEGER_COLUMNS:  # whole numbers, blank for the baseline
        board[column] = board[column].astype("Int64")
    return board[COLUMNS]


def champion(board: pd.DataFrame) -> str:
    """The model ranked first (by validation accuracy)."""
    return str(board.loc[board["rank"] == 1, "model"].iloc[0])


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table: accuracies to 4 decimals, counts as integers."""
    shown = board.copy()
    for column in INTEGER_COLUMNS:  # a CSV round trip turns them into floats
        if column in shown:
            shown[column] = shown[column].round().astype("Int64")
    shown = shown.astype(object)
    accuracies = ("val_accuracy", "best_val_accuracy", "test_accuracy", "test_roc_auc", "test_f1")
    for column in shown.columns:
        digits = 4 if column in accuracies else 1
        shown[column] = [
            "" if pd.isna(v) else v if isinstance(v, str | int) else f"{v:.{digits}f}"
            for v in shown[column]
        ]
    return shown.to_markdown(index=False, disable_numparse=True)


def to_markdown(board: pd.DataFrame, champion_name: str, version: str | None) -> str:
    """The leaderboard as a Markdown page, naming the champion and its registry version."""
    registered = (f"registered as `catsdogs` version {version}, alias `champion`" if version
                  else "not registered (its MLflow run is not in this tracking store)")
    return (
        "# catsdogs leaderboard\n\n"
        f"Champion by validation accuracy: **{champion_name}**, {registered}.\n\n"
        + leaderboard_markdown(board)
        + "\n"
    )
