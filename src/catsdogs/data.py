"""The input pipeline: from the split manifest to batched tf.data datasets.

Reads the manifest CSV written by the split stage and the image files it names. Each JPEG is
decoded and resized once, in parallel, then cached in memory as uint8 (a quarter of float32's
size); every epoch after the first reads the cache, shuffles with the seed, batches and
prefetches. Nothing here re-splits: a split is whatever the manifest says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import tensorflow as tf

log = logging.getLogger(__name__)

MANIFEST_REQUIRED = ("path", "label_index", "split")


def read_manifest(path: Path) -> pd.DataFrame:
    """Read the manifest CSV; a missing file or column is a ValueError naming it."""
    if not Path(path).is_file():
        raise ValueError(f"manifest '{path}' does not exist; run the split stage first")
    manifest = pd.read_csv(path)
    missing = [c for c in MANIFEST_REQUIRED if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest '{path}' lacks column(s) {missing}")
    return manifest


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of one split, in manifest order; an empty split is an error."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"the manifest has no '{split}' images")
    return rows


def decode_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read, decode (JPEG, PNG, GIF, BMP) and resize one image to uint8 RGB."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size))
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def image_dataset(
    rows: pd.DataFrame,
    images_dir: Path,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], float32 labels) for the given manifest rows.

    Decoded images are cached after the first pass; with `shuffle` the order changes each
    epoch, reproducibly from `seed`. Element order is deterministic either way.
    """
    paths = [str(Path(images_dir) / p) for p in rows["path"]]
    labels = rows["label_index"].astype("float32").to_numpy()
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(
        lambda path, label: (decode_image(path, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).cache()
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # The cast after batching works on whole batches and keeps the cache at uint8.
    dataset = dataset.map(
        lambda images, labels: (tf.cast(images, tf.float32), labels[:, None]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_images(paths: list[Path], image_size: int) -> tf.Tensor:
    """Decode a handful of images into one float32 batch (figures, input examples)."""
    return tf.stack(
        [tf.cast(decode_image(tf.constant(str(p)), image_size), tf.float32) for p in paths]
    )
