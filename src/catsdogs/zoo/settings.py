"""The `train` params section: how every model of the zoo is trained, unless its own entry
in params.yaml says otherwise (`ENTRY_TRAIN_KEYS`).

Also the names of the zoo's entries (`entry_names`). Plain data, no TensorFlow: the split
stage reads `image_size` from here too, and `catsdogs report` lists a revision's models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from catsdogs.core.params import Range

Strategy = Literal["auto", "default", "mirrored", "multi_worker"]
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]

# The `train` settings a zoo entry may override for itself. A fine-tuned model keeps the
# image size of the model it continues.
ENTRY_TRAIN_KEYS = ("image_size", "batch_size", "epochs", "precision")
FINETUNE_TRAIN_KEYS = ("batch_size", "epochs", "precision")


@dataclass(frozen=True)
class TrainConfig:
    """The `train` params section."""

    image_size: Annotated[int, Range(1)] = 160
    batch_size: Annotated[int, Range(1)] = 32
    epochs: Annotated[int, Range(1)] = 20
    strategy: Strategy = "auto"
    precision: Precision = "float32"
    # Decoded photos (train + validation) up to this size stay in memory; past it, training
    # reads them from a cache file under cache_dir. Either way the batches are the same.
    memory_budget_mb: Annotated[float, Range(0)] = 4096
    cache_dir: str = "data/cache"
    # Save the training's state after each epoch, and go on from it after a crash
    # (catsdogs.training.resume). It changes no number: no stage depends on it.
    resume: bool = True


# The settings that change no number: left out of what decides a training (its resume digest).
NOT_DECIDING = ("memory_budget_mb", "cache_dir", "resume")


def entry_names(params: Mapping[str, Any]) -> list[str]:
    """Every model of the zoo, `models` then `finetune`, in params order."""
    return [*(params.get("models") or {}), *(params.get("finetune") or {})]
