"""The input pipeline: from split manifest rows to batched tf.data datasets.

Reads the image files the manifest rows name, each decoded and resized once by
`images.read_image` (on every core) and held in memory as uint8, a quarter of float32's
size. Every epoch reads that array, shuffles it with the seed, batches and prefetches.
Nothing here re-splits: a split is whatever the manifest says.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import tensorflow as tf

from catsdogs.data.images import read_images

log = logging.getLogger(__name__)


def image_dataset(
    rows: pd.DataFrame,
    images_dir: Path,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], float32 labels of shape (n, 1)) for `rows`.

    The rows come from a split manifest, so their files were checked by the split stage;
    a file that no longer reads fails here with ImageRefused naming it. With `shuffle` the
    order changes each epoch, reproducibly from `seed`; element order is deterministic.
    """
    started = time.perf_counter()
    images = read_images([Path(images_dir) / p for p in rows["path"]], image_size, max_pixels=None)
    log.info("decoded %d images at %d px in %.1f s", len(images), image_size,
             time.perf_counter() - started)
    labels = rows["label_index"].astype("float32").to_numpy()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # The cast after batching works on whole batches and keeps the array in memory uint8.
    dataset = dataset.map(
        lambda images, labels: (tf.cast(images, tf.float32), labels[:, None]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
