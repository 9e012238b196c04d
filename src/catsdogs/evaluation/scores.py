"""Score a model's logits against true labels: the numbers of `metrics/eval/<model>.json`.

Pure NumPy on arrays in, dicts and DataFrames out, so the arithmetic can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd

from catsdogs.core.params import Range
from catsdogs.data.manifest import LABELS, predicted_index


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` params section."""

    batch_size: Annotated[int, Range(1)] = 64


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probability of the positive class (dog) from logits, without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Each run of equal values: where it starts and ends in sorted order.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random dog outscores a random cat (ties 1/2).

    From ranks (the Mann-Whitney U), in O(n log n) time and O(n) memory: comparing every dog
    with every cat would hold a dogs x cats matrix (2.5 GB at a million photos).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores)
    positives, negatives = int(y_true.sum()), int((~y_true).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    # Half-integers summed: exact in float64, so the value equals the pairwise count's.
    above = _average_ranks(scores)[y_true].sum() - positives * (positives + 1) / 2
    return float(above / (positives * negatives))


def classification_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Accuracy, loss, precision, recall, F1, ROC AUC and the confusion matrix (dog positive).

    The confusion matrix is `[[true cat as cat, true cat as dog], [dog as cat, dog as dog]]`.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    logits = np.asarray(logits, dtype=np.float64).ravel()
    if y_true.shape != logits.shape or y_true.size == 0:
        raise ValueError(
            f"need equal, non-empty label and logit arrays, got {y_true.shape} and {logits.shape}"
        )
    y_pred = predicted_index(logits)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # Binary cross-entropy from logits, the training loss: max(x, 0) - x*y + log(1 + e^-|x|).
    loss = np.maximum(logits, 0) - logits * y_true + np.log1p(np.exp(-np.abs(logits)))
    return {
        "accuracy": (tp + tn) / y_true.size,
        "loss": float(loss.mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y_true, logits),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "count": int(y_true.size),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> list[list[int]]:
    """`[[true cat as cat, true cat as dog], [dog as cat, dog as dog]]` from label indices."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return [[int(((y_true == actual) & (y_pred == called)).sum()) for called in range(len(LABELS))]
            for actual in range(len(LABELS))]


def class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float | int | None]]:
    """Per class: precision (of the photos called it, the share that are), recall (of the
    photos that are it, the share called it) and the number of photos that are it; None
    where a share has nothing to count (no photo called it, or none is it)."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    scores: dict[str, dict[str, float | int | None]] = {}
    for index, label in enumerate(LABELS):
        called, actual = y_pred == index, y_true == index
        hits = int((called & actual).sum())
        scores[label] = {"precision": hits / int(called.sum()) if called.any() else None,
                         "recall": hits / int(actual.sum()) if actual.any() else None,
                         "photos": int(actual.sum())}
    return scores


def predictions_table(paths: list[str], y_true: np.ndarray, logits: np.ndarray) -> pd.DataFrame:
    """One row per image: path, actual and predicted label, probability of dog."""
    y_true = np.asarray(y_true).astype(int).ravel()
    logits = np.asarray(logits).ravel()
    return pd.DataFrame(
        {
            "path": paths,
            "actual": [LABELS[i] for i in y_true],
            "predicted": [LABELS[i] for i in predicted_index(logits)],
            "probability_dog": np.round(sigmoid(logits), 6),
        }
    )


def predict_logits(model: Any, dataset: Any) -> np.ndarray:
    """The model's logits for every element of a batched dataset, in order, as a 1-D array."""
    return np.asarray(model.predict(dataset, verbose=0)).ravel()
