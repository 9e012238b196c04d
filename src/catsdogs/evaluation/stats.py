"""How sure a number is: intervals for accuracies, and paired tests for two models.

Pure functions of counts (SciPy's binomial test does the arithmetic). With 200 test photos
one photo is half a point, and a 95% interval spans several points: an accuracy is shown
with its Wilson interval, and two models (or two revisions of one) are compared on the same
photos by which photos one gets right and the other wrong (the exact McNemar test).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

CONFIDENCE = 0.95
# Below this p-value a difference between two models on the same photos counts as real.
SIGNIFICANCE = 0.05


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of `correct` out of `total`."""
    if total <= 0:
        return (float("nan"), float("nan"))
    interval = binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


@dataclass(frozen=True)
class PairedComparison:
    """Two sets of predictions on the same photos: `fixed` photos the head gets right and the
    base got wrong, `broken` the reverse, the exact McNemar p-value, and a verdict."""

    photos: int
    fixed: int
    broken: int
    p_value: float
    verdict: str


def compare_paired(base_correct: list[bool], head_correct: list[bool]) -> PairedComparison:
    """Exact McNemar test on paired right/wrong outcomes (one entry per photo, same order).

    Only the discordant photos count: under "no difference" each is as likely fixed as broken,
    so the p-value is a two-sided binomial test of `fixed` out of `fixed + broken` at 1/2.
    The verdict is better or worse below SIGNIFICANCE, else "within noise".
    """
    if len(base_correct) != len(head_correct):
        raise ValueError(f"paired outcomes differ in length: {len(base_correct)} and {len(head_correct)}")
    fixed = sum(1 for b, h in zip(base_correct, head_correct, strict=True) if h and not b)
    broken = sum(1 for b, h in zip(base_correct, head_correct, strict=True) if b and not h)
    p_value = binomtest(fixed, fixed + broken, 0.5).pvalue if fixed + broken else 1.0
    if p_value < SIGNIFICANCE:
        verdict = "better" if fixed > broken else "worse"
    else:
        verdict = "within noise"
    return PairedComparison(len(base_correct), fixed, broken, float(p_value), verdict)
