"""Classify image files with a trained model, in bounded-memory batches.

Reads image files (JPEG, PNG, GIF, BMP) and folders of them, recursively; yields one
prediction per readable image. Unreadable files are skipped with a warning naming them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from catsdogs.data import decode_image
from catsdogs.evaluation import sigmoid
from catsdogs.models import outputs_probability
from catsdogs.split import LABELS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}


@dataclass(frozen=True)
class Prediction:
    """One image's verdict: its path, the label and the probability that it is a dog."""

    path: str
    label: str
    probability_dog: float


def iter_image_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Files as given, and image files under folders (recursively, sorted); lazily."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        elif path.exists():
            yield path
        else:
            log.warning("skipped %s: no such file or folder", path)


def _load(path: Path, image_size: int) -> np.ndarray | None:
    # The training pipeline's own decode and resize: predictions see what training saw.
    try:
        image = decode_image(tf.constant(str(path)), image_size)
    except tf.errors.OpError as error:
        # TF's message wraps the reason in op details: keep the sentence a user can act on.
        reason = re.sub(r"\{\{.*?\}\}|\s*\[Op:.*$", "", error.message.splitlines()[0]).strip()
        log.warning("skipped %s: not a readable image (%s)", path, reason)
        return None
    return image.numpy().astype(np.float32)


def _batches(
    files: Iterable[Path], image_size: int, batch_size: int
) -> Iterator[tuple[list[Path], np.ndarray]]:
    paths: list[Path] = []
    images: list[np.ndarray] = []
    for path in files:
        image = _load(path, image_size)
        if image is None:
            continue
        paths.append(path)
        images.append(image)
        if len(images) == batch_size:
            yield paths, np.stack(images)
            paths, images = [], []
    if images:
        yield paths, np.stack(images)


def predict_files(
    model: object, paths: Sequence[Path], *, batch_size: int = 64
) -> Iterator[Prediction]:
    """Yield a Prediction per readable image under `paths`; at most one batch in memory.

    `model` is a Keras model taking raw RGB in [0, 255] and returning one logit per image
    (as the train stage saves it) or one probability (as logged to MLflow); its input size
    sets the resize.
    """
    image_size = int(model.input_shape[1])
    gives_probability = outputs_probability(model)
    for batch_paths, images in _batches(iter_image_files(paths), image_size, batch_size):
        outputs = np.asarray(model.predict_on_batch(images), dtype=np.float64).ravel()
        probabilities = outputs if gives_probability else sigmoid(outputs)
        for path, probability in zip(batch_paths, probabilities, strict=True):
            yield Prediction(str(path), LABELS[int(probability >= 0.5)], round(float(probability), 6))
