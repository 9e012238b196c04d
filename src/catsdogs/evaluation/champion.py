"""The champion decision: whether a newly registered model takes the registry's champion
alias or waits as the challenger.

By validation accuracy only, on the same validation photos (choosing by test accuracy
would make the test set a second validation set). Pure: the registry
(`catsdogs.tracking.registry`) reads the versions' standings and moves the alias.
"""

from __future__ import annotations

from dataclasses import dataclass

# The Model Registry's aliases: the model `predict` and serving use, and the best candidate
# that did not beat it.
CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Standing:
    """A registered model version's claim to the champion alias: its validation accuracy and
    which validation photos it was measured on (`data.manifest.split_digest`)."""

    version: str
    val_accuracy: float | None
    validation_data: str | None


def champion_decision(candidate: Standing, incumbent: Standing | None, *,
                      promote: bool = False) -> tuple[str, str]:
    """(alias, reason): whether `candidate` takes the champion alias from `incumbent` or
    waits as the challenger. Only a strictly better validation accuracy on the same
    validation photos takes it (a tie keeps the incumbent); `promote` takes it on purpose."""
    if promote:
        replacing = f", replacing version {incumbent.version}" if incumbent else ""
        return CHAMPION, f"promoted on purpose (--promote){replacing}"
    if incumbent is None:
        return CHAMPION, "there was no champion"
    if incumbent.version == candidate.version:
        return CHAMPION, "it is already the champion"
    ours, theirs = candidate.validation_data, incumbent.validation_data
    if ours is None or theirs is None or ours != theirs:
        seen = f"{(theirs or 'unrecorded')[:12]} vs {(ours or 'unrecorded')[:12]}"
        return CHALLENGER, (f"not comparable with the champion, version {incumbent.version}: "
                            f"validated on other photos (validation set {seen}); promote it "
                            "on purpose with `python stages/compare.py --promote`")
    new, old = candidate.val_accuracy or 0.0, incumbent.val_accuracy or 0.0
    if new > old:
        return CHAMPION, (f"it beats the champion, version {incumbent.version}, on the same "
                          f"validation photos: {new:.4f} > {old:.4f}")
    return CHALLENGER, (f"it does not beat the champion, version {incumbent.version}, on the "
                        f"same validation photos: {new:.4f} vs {old:.4f} (a tie keeps the "
                        "champion)")
