"""Evaluation arithmetic on a case small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from catsdogs.evaluation import classification_metrics, predictions_table, roc_auc, sigmoid


def test_hand_checked_metrics() -> None:
    # truth:   cat  cat  cat  dog  dog  dog
    # logits: -2.0  0.5 -1.0  3.0 -0.5  1.0  -> predicted cat dog cat dog cat dog
    y_true = np.array([0, 0, 0, 1, 1, 1])
    logits = np.array([-2.0, 0.5, -1.0, 3.0, -0.5, 1.0])
    m = classification_metrics(y_true, logits)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]  # [[cat->cat, cat->dog], [dog->cat, dog->dog]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # Dog scores 3.0, -0.5, 1.0 vs cat scores -2.0, 0.5, -1.0: 3 + 2 + 3 = 8 of 9 pairs ordered right.
    assert m["roc_auc"] == pytest.approx(8 / 9)
    expected_loss = np.mean([math.log1p(math.exp(-x)) if y else math.log1p(math.exp(x))
                             for y, x in zip(y_true, logits, strict=True)])
    assert m["loss"] == pytest.approx(expected_loss)
    assert m["count"] == 6


def test_perfect_and_all_wrong() -> None:
    y = np.array([0, 1, 1])
    assert classification_metrics(y, np.array([-5.0, 5.0, 5.0]))["accuracy"] == 1.0
    wrong = classification_metrics(y, np.array([5.0, -5.0, -5.0]))
    assert (wrong["accuracy"], wrong["precision"], wrong["recall"], wrong["f1"]) == (0, 0, 0, 0)
    assert roc_auc(y, np.array([1.0, 1.0, 1.0])) == 0.5


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal, non-empty"):
        classification_metrics(np.array([0, 1]), np.array([0.3]))


def test_predictions_table_labels_and_probability() -> None:
    table = predictions_table(["a.jpg", "b.jpg", "c.jpg"], np.array([0, 1, 1]),
                              np.array([0.0, -2.0, 0.01]))
    assert list(table["actual"]) == ["cat", "dog", "dog"]
    # Dog strictly above logit 0 (probability 0.5), as Keras' accuracy counted it in training.
    assert list(table["predicted"]) == ["cat", "cat", "dog"]
    assert table["probability_dog"].tolist() == pytest.approx(
        [0.5, float(sigmoid(-2.0)), float(sigmoid(0.01))], abs=1e-6)
