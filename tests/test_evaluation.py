"""Evaluation arithmetic on a case small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from catsdogs.evaluation.scores import classification_metrics, predictions_table, roc_auc, sigmoid


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


def pairwise_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The definition, every dog against every cat: the value the ranks must give."""
    pos, neg = scores[y_true.astype(bool)], scores[~y_true.astype(bool)]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(20))
def test_rank_auc_equals_the_pairwise_definition_ties_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 400))
    y = rng.integers(0, 2, size)
    y[:2] = [0, 1]
    # Few distinct values (many ties) on even seeds, continuous scores on odd ones.
    scores = rng.integers(0, 5, size).astype(float) if seed % 2 == 0 else rng.normal(size=size)
    assert roc_auc(y, scores) == pairwise_auc(y, scores)


def test_rank_auc_of_a_million_photos_needs_no_pairs_matrix() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1_000_000)
    scores = y + rng.normal(scale=2.0, size=y.size)
    # The pairwise matrix would be 2.5e11 booleans; the ranks need a few arrays of 1e6.
    assert roc_auc(y, scores) == pytest.approx(0.638, abs=0.005)
