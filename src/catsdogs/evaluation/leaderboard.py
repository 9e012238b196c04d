"""The leaderboard: every model's validation and test numbers side by side, and the champion.

Reads the metrics dicts written by the train and evaluate stages, each model's training
record (epochs, timings, size: `training.train.training_record`) and the data facts (for the
majority-class baseline and the number of validation images); returns DataFrames. Each
accuracy carries its 95% Wilson interval. The champion is chosen by validation accuracy
only: choosing by test accuracy would make the test set a second validation set and its
number an optimistic one (`champion.champion_decision` keeps to the same rule for the
registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from catsdogs.evaluation.stats import wilson_interval
from catsdogs.training.history import EPOCH_METRICS

BASELINE = "majority_baseline"
COLUMNS = ["rank", "model", "val_accuracy", "val_low", "val_high", "best_val_accuracy",
           "test_accuracy", "test_low", "test_high", "test_roc_auc", "test_f1", "epochs",
           "train_seconds", "images_per_second", "params"]
INTEGER_COLUMNS = ("rank", "epochs", "params")
ACCURACY_COLUMNS = ("val_accuracy", "val_low", "val_high", "best_val_accuracy", "test_accuracy",
                    "test_low", "test_high", "test_roc_auc", "test_f1")
CURVE_COLUMNS = ["model", "epoch", *EPOCH_METRICS]


def _interval(accuracy: float, total: int) -> tuple[float, float]:
    return wilson_interval(round(accuracy * total), total)


def leaderboard(
    train: Mapping[str, Mapping[str, Any]],
    evaluation: Mapping[str, Mapping[str, Any]],
    data: Mapping[str, Any],
    trained: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per model that has both training and test metrics, plus the baseline row.

    `trained` holds each model's training record, for the epochs, timing and size columns
    (blank where a model has none). Sorted by validation accuracy, best first (ties: by
    name); the baseline comes last.
    """
    trained = trained or {}
    missing = sorted(set(train) ^ set(evaluation))
    if missing:
        raise ValueError(f"models with training but no test metrics, or the reverse: {missing}")
    if not train:
        raise ValueError("no model metrics to compare; run the train and evaluate stages first")
    splits = data["splits"]
    val_total = splits["validation"]["total"]
    rows = []
    for name in train:
        val, test = train[name]["val_accuracy"], evaluation[name]["accuracy"]
        test_total = evaluation[name].get("count", splits["test"]["total"])
        rows.append({
            "model": name,
            "val_accuracy": val,
            **dict(zip(("val_low", "val_high"), _interval(val, val_total), strict=True)),
            "best_val_accuracy": train[name].get("best_val_accuracy"),
            "test_accuracy": test,
            **dict(zip(("test_low", "test_high"), _interval(test, test_total), strict=True)),
            "test_roc_auc": evaluation[name].get("roc_auc"),
            "test_f1": evaluation[name].get("f1"),
            "epochs": trained.get(name, {}).get("epochs"),
            "train_seconds": trained.get(name, {}).get("seconds"),
            "images_per_second": trained.get(name, {}).get("images_per_second"),
            "params": trained.get(name, {}).get("params", {}).get("total"),
        })
    board = pd.DataFrame(rows).sort_values(["val_accuracy", "model"], ascending=[False, True])
    board.insert(0, "rank", range(1, len(board) + 1))
    baseline = {"rank": None, "model": BASELINE,
                "val_accuracy": splits["validation"]["baseline_accuracy"],
                "test_accuracy": splits["test"]["baseline_accuracy"]}
    board = pd.concat([board, pd.DataFrame([baseline])], ignore_index=True)
    for column in INTEGER_COLUMNS:  # whole numbers, blank for the baseline
        board[column] = board[column].astype("Int64")
    return board[COLUMNS]


def best_model(board: pd.DataFrame) -> str:
    """The model ranked first (by validation accuracy)."""
    return str(board.loc[board["rank"] == 1, "model"].iloc[0])


def headline(board: pd.DataFrame, names: list[str]) -> dict[str, dict[str, float]]:
    """{model: {val_accuracy, test_accuracy}} in the order of `names`: the numbers
    experiments are compared by."""
    rows = board.set_index("model")
    return {name: {"val_accuracy": float(rows.loc[name, "val_accuracy"]),
                   "test_accuracy": float(rows.loc[name, "test_accuracy"])}
            for name in names}


def curves(histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's per-epoch history in one long table (model, epoch, losses, accuracies),
    for charts with the models as lines."""
    frames = [history.assign(model=name)[CURVE_COLUMNS] for name, history in histories.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)


def _with_interval(value: Any, low: Any, high: Any) -> str:
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{value:.4f}"
    return f"{value:.4f} ({low:.3f}-{high:.3f})"


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table: accuracies to 4 decimals with their 95% interval
    in brackets, counts as integers."""
    shown = board.copy()
    for column in INTEGER_COLUMNS:  # a CSV round trip turns them into floats
        if column in shown:
            shown[column] = shown[column].round().astype("Int64")
    for split in ("val", "test"):
        if f"{split}_low" in shown:
            shown[f"{split}_accuracy"] = [
                _with_interval(v, lo, hi) for v, lo, hi in
                zip(shown[f"{split}_accuracy"], shown[f"{split}_low"], shown[f"{split}_high"],
                    strict=True)
            ]
            shown = shown.drop(columns=[f"{split}_low", f"{split}_high"])
    shown = shown.astype(object)
    for column in shown.columns:
        digits = 4 if column in ACCURACY_COLUMNS else 1
        shown[column] = [
            "" if pd.isna(v) else v if isinstance(v, str | int) else f"{v:.{digits}f}"
            for v in shown[column]
        ]
    return shown.to_markdown(index=False, disable_numparse=True)


def to_markdown(board: pd.DataFrame, champion_name: str, registry: str) -> str:
    """The leaderboard as a Markdown page, naming the best model and what the registry did
    with it (`registry`, a sentence)."""
    return (
        "# catsdogs leaderboard\n\n"
        f"Best by validation accuracy: **{champion_name}**. {registry}\n\n"
        + leaderboard_markdown(board)
        + "\n\nAccuracies with their 95% interval (Wilson) in brackets.\n"
    )


def results_table(board: pd.DataFrame) -> str:
    """The README's "What to expect" table: each model's validation and test accuracy with
    its 95% interval, best validation first, the majority baseline last."""
    rows = []
    for row in board.itertuples():
        name = "majority baseline" if row.model == BASELINE else f"`{row.model}`"
        rows.append({"model": name,
                     "validation accuracy": _with_interval(row.val_accuracy, row.val_low, row.val_high),
                     "test accuracy": _with_interval(row.test_accuracy, row.test_low, row.test_high)})
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
