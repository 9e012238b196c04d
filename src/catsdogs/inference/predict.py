"""Classify image files with a trained model, in bounded-memory batches.

Reads image files and folders of them (recursively); yields a Prediction for each image it
classifies and a Skipped, with the reason, for each file it does not: a folder's files that
are not images, unsupported formats, damaged files, files over the pixel limit. Each file is
decoded by `images.read_image`, as in training, after its header passed the pixel limit, so
memory stays bounded by one batch whatever a single file claims to be. The model is a Keras
model in this process (`classify`) or any function from a batch of images to P(dog)
(`classify_with`). A model that takes photos, served (`catsdogs.inference.server_client`) or loaded from the
registry (`photo_pyfunc`), is sent the files' bytes as they are and decodes them itself, the
same way (`classify_photos`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catsdogs.data.images import SUFFIXES, SUPPORTED, ImageRefused, read_file_bytes, read_image
from catsdogs.data.manifest import LABELS, PROBABILITY_THRESHOLD
from catsdogs.evaluation.scores import sigmoid

log = logging.getLogger(__name__)

# A batch of uint8 RGB images (n, size, size, 3) in, the probability of dog per image out.
Scorer = Callable[[np.ndarray], np.ndarray]
# A batch of encoded image files in, (label, probability of dog) per photo out; raises
# PhotoRefused when the model refuses one of them.
PhotoSender = Callable[[list[bytes]], list[tuple[str, float]]]


class PhotoRefused(Exception):
    """A model that takes photos refused the batch because of one: its row and the reason."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"photo {row}: {reason}")
        self.row, self.reason = row, reason


@dataclass(frozen=True)
class Prediction:
    """One image's verdict: its path, the label and the probability that it is a dog."""

    path: str
    label: str
    probability_dog: float


@dataclass(frozen=True)
class Skipped:
    """A file not classified: its path, a short kind (for counting) and the full reason."""

    path: str
    kind: str
    reason: str


def iter_files(paths: Sequence[Path]) -> Iterator[Path | Skipped]:
    """Files as given, and every file under folders (recursively, sorted); lazily.

    A folder's files whose names do not end like an image are Skipped, named, not dropped.
    """
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_dir():
                    continue
                if not child.is_file():
                    yield Skipped(str(child), "not a file", "not a regular file (a broken link, "
                                  "a socket or a device); point to the photo itself")
                elif child.suffix.lower() in SUFFIXES:
                    yield child
                else:
                    ending = child.suffix or "no file name extension"
                    yield Skipped(str(child), "not an image file",
                                  f"not an image file ({ending}); catsdogs reads {SUPPORTED}")
        elif path.is_file():
            yield path
        else:
            yield Skipped(str(path), "missing", "no such file or folder")


def _batches(
    files: Iterable[Path | Skipped], image_size: int, batch_size: int, max_pixels: int
) -> Iterator[Skipped | tuple[list[Path], np.ndarray]]:
    """Skipped files as they come, and (paths, uint8 images) batches of readable ones."""
    paths: list[Path] = []
    images: list[np.ndarray] = []
    for item in files:
        if isinstance(item, Skipped):
            yield item
            continue
        try:
            image = read_image(item, image_size, max_pixels=max_pixels, limit_setting="--max-pixels")
        except ImageRefused as refused:
            yield Skipped(str(item), refused.kind, f"{refused.reason}; {refused.remedy}")
            continue
        paths.append(item)
        images.append(image)
        if len(images) == batch_size:
            yield paths, np.stack(images)
            paths, images = [], []
    if images:
        yield paths, np.stack(images)


def keras_scorer(model: object) -> Scorer:
    """P(dog) from a Keras model taking raw RGB in [0, 255] and returning one logit per image
    (as the train stage saves it) or one probability (as logged to MLflow)."""
    # Imported here, not above: sending photos to a served model never starts TensorFlow.
    from catsdogs.models.model_file import outputs_probability

    gives_probability = outputs_probability(model)

    def score(images: np.ndarray) -> np.ndarray:
        outputs = np.asarray(model.predict_on_batch(images.astype(np.float32)), dtype=np.float64).ravel()
        return outputs if gives_probability else sigmoid(outputs)

    return score


def classify(
    model: object, paths: Sequence[Path], *, batch_size: int = 64, max_pixels: int
) -> Iterator[Prediction | Skipped]:
    """A Prediction per readable image under `paths`, a Skipped per other file, in order.

    `model` is a Keras model (see keras_scorer); its input size sets the resize. At most one
    batch of images is in memory.
    """
    from catsdogs.models.model_file import input_size

    return classify_with(keras_scorer(model), input_size(model), paths, batch_size=batch_size,
                         max_pixels=max_pixels)


def classify_with(
    score: Scorer, size: int, paths: Sequence[Path], *, batch_size: int, max_pixels: int
) -> Iterator[Prediction | Skipped]:
    """classify, with `score` giving P(dog) for a batch of images decoded at `size` pixels."""
    for item in _batches(iter_files(paths), size, batch_size, max_pixels):
        if isinstance(item, Skipped):
            yield item
            continue
        batch_paths, images = item
        probabilities = np.asarray(score(images), dtype=np.float64).ravel()
        for path, probability in zip(batch_paths, probabilities, strict=True):
            label = LABELS[int(probability > PROBABILITY_THRESHOLD)]
            yield Prediction(str(path), label, round(float(probability), 6))


def classify_photos(
    send: PhotoSender, paths: Sequence[Path], *, batch_size: int, max_bytes: int
) -> Iterator[Prediction | Skipped]:
    """A Prediction per photo under `paths` that the model `send` reaches accepts, a Skipped
    per other file, in order. Files go as they are, `batch_size` a call; one over `max_bytes`
    is not sent. When the model refuses a batch for one photo, the batch goes again one photo
    at a time: each refused file is named with the model's reason, the others classified."""
    batch: list[tuple[Path, bytes]] = []

    def flush() -> Iterator[Prediction | Skipped]:
        try:
            answers = send([data for _, data in batch])
        except PhotoRefused as refused:
            if len(batch) == 1:
                yield Skipped(str(batch[0][0]), "refused by the model", refused.reason)
                return
            for path, data in batch:
                try:
                    [(label, probability)] = send([data])
                except PhotoRefused as alone:
                    yield Skipped(str(path), "refused by the model", alone.reason)
                else:
                    yield Prediction(str(path), label, round(float(probability), 6))
            return
        for (path, _), (label, probability) in zip(batch, answers, strict=True):
            yield Prediction(str(path), label, round(float(probability), 6))

    for item in iter_files(paths):
        if isinstance(item, Skipped):
            yield item
            continue
        size = item.stat().st_size
        if size > max_bytes:
            yield Skipped(str(item), "too large", f"{size:,} bytes, over the {max_bytes:,} a "
                          "photo the model takes; send a smaller copy")
            continue
        try:
            batch.append((item, read_file_bytes(item)))
        except ImageRefused as refused:
            yield Skipped(str(item), refused.kind, f"{refused.reason}; {refused.remedy}")
            continue
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def skip_summary(skipped: Sequence[Skipped], named: int) -> list[str]:
    """Lines for the skipped files beyond the first `named` (which were reported one by one):
    their count by kind. Empty when every skipped file was named."""
    rest = skipped[named:]
    if not rest:
        return []
    counts = Counter(s.kind for s in rest)
    kinds = ", ".join(f"{count} {kind}" for kind, count in counts.most_common())
    return [f"skipped {len(skipped)} files in all; besides the {named} named above: {kinds}"]
