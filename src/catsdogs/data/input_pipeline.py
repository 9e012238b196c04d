"""The input pipeline: from split manifest rows to batched tf.data datasets.

Each photo is decoded and resized once (`images.read_image`, on every core) into uint8, a
quarter of float32's size, and kept in one of two places (`DecodedImages`):

- in memory, one array, when the decoded photos fit `train.memory_budget_mb`;
- past it, in a cache file on disk (`DiskCache`, under `train.cache_dir`), one fixed-size
  record per photo, named by a hash of the photos' paths and contents and the image size,
  so a changed manifest or size builds a new one and an unchanged one is reused.

Either way tf.data never holds a copy: the dataset is made of photo *indices*, shuffled
with the seed and batched, and each batch of indices is read from the store. The two stores
hand out the same pixels for the same indices, so with the same seed both yield identical
batches, in the same order as `from_tensor_slices(images).shuffle(n, seed)` did (a shuffle's
order depends on the seed and the count, never on the elements). Nothing here re-splits: a
split is whatever the manifest says.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import tensorflow as tf

from catsdogs.data import images
from catsdogs.data.images import read_images
from catsdogs.data.parallel import ordered_map

log = logging.getLogger(__name__)

# The libraries whose upgrade can change a decoded photo's pixels (codecs, resampling).
DECODER_PACKAGES = ("pillow", "pillow-heif", "numpy")
CACHE_SUFFIX = ".u8"
# Photos per task of a cache build: a worker holds one decoded photo at a time.
BUILD_CHUNK = 256


class DecodedImages(Protocol):
    """Decoded photos, each (size, size, 3) uint8, read by position."""

    image_size: int
    # How many photos take() has handed out: what a worker actually read.
    photos_read: int

    def __len__(self) -> int: ...

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The photos at `indices`, in that order: (len(indices), size, size, 3) uint8."""


class InMemory:
    """Every photo decoded into one array."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.image_size = images.shape[1]
        self.photos_read = 0

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: np.ndarray) -> np.ndarray:
        self.photos_read += len(indices)  # a tally for the log, not a lock-guarded count
        return self.images[indices]


class DiskCache:
    """Decoded photos in a file of fixed-size records, read with pread.

    Reads go through the page cache, which the kernel gives back under pressure; the
    process itself holds only the batches in flight (a memory map would count every page
    it touched as the process's own).
    """

    def __init__(self, path: Path, count: int, image_size: int) -> None:
        self.path, self.count, self.image_size = path, count, image_size
        self.record = image_size * image_size * 3
        expected = count * self.record
        if path.stat().st_size != expected:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {expected}")
        self._fd = os.open(path, os.O_RDONLY)
        self.photos_read = 0

    def __len__(self) -> int:
        return self.count

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def take(self, indices: np.ndarray) -> np.ndarray:
        size = self.image_size
        batch = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        self.photos_read += len(indices)
        for slot, index in enumerate(indices):
            got = os.preadv(self._fd, [memoryview(batch[slot]).cast("B")], int(index) * self.record)
            if got != self.record:
                raise OSError(f"{self.path}: short read of photo {index} ({got} of {self.record} bytes)")
        return batch


def decoded_bytes(count: int, image_size: int) -> int:
    """Bytes of `count` photos decoded at `image_size` px as uint8."""
    return count * image_size * image_size * 3


@functools.cache
def decoder_fingerprint() -> str:
    """What decides a decoded photo's pixels besides the photo and the size: the decoding
    code (catsdogs.data.images, read_image and what it calls) and the versions of the
    libraries it runs (`DECODER_PACKAGES`). A cache file made by other code or libraries
    then matches no key and is built again, as evaluation and predict decode afresh."""
    digest = hashlib.sha256(Path(images.__file__).read_bytes())
    for package in DECODER_PACKAGES:
        try:
            digest.update(f"{package}=={metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent\n".encode())
    return digest.hexdigest()[:16]


def cache_key(rows: pd.DataFrame, image_size: int, decoder: str | None = None) -> str:
    """A name for the decoded form of `rows` at `image_size`: changes with any photo's path
    or content (the manifest's sha256, else the file's size and modification time) and
    with the decoder (`decoder_fingerprint()` unless given)."""
    decoder = decoder or decoder_fingerprint()
    digest = hashlib.sha256(f"catsdogs-decoded {decoder} {image_size}px\n".encode())
    contents = rows["sha256"] if "sha256" in rows else [""] * len(rows)
    for path, content in zip(rows["path"], contents, strict=True):
        digest.update(f"{path}\t{content}\n".encode())
    return digest.hexdigest()[:32]


def build_disk_cache(paths: Sequence[Path], image_size: int, target: Path) -> None:
    """Decode `paths` into the record file `target`, on every core (`parallel.ordered_map`).

    Written to a temporary file and renamed when whole, so an interrupted build leaves no
    cache that looks complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as out:
            out.truncate(decoded_bytes(len(paths), image_size))
        chunks = [(start, paths[start:start + BUILD_CHUNK])
                  for start in range(0, len(paths), BUILD_CHUNK)]
        ordered_map(functools.partial(images.decode_into_file, str(partial), image_size), chunks,
                    label=f"decoding into {target.parent}", weight=lambda chunk: len(chunk[1]))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def fits_in_memory(count: int, image_size: int, memory_budget_mb: float) -> bool:
    """Whether `count` photos decoded at `image_size` px fit within the budget."""
    return decoded_bytes(count, image_size) <= memory_budget_mb * 2**20


def disk_cache_for(count: int, image_size: int, memory_budget_mb: float,
                   cache_dir: str | Path) -> Path | None:
    """Where `count` photos decoded at `image_size` px are kept: None (in memory) while they
    fit `memory_budget_mb`, else the disk cache folder `cache_dir` (said in the log)."""
    if fits_in_memory(count, image_size, memory_budget_mb):
        return None
    log.info("%d decoded photos at %d px exceed train.memory_budget_mb (%s MB): reading them "
             "from the disk cache in %s", count, image_size, memory_budget_mb, cache_dir)
    return Path(cache_dir)


def decoded_images(rows: pd.DataFrame, images_dir: Path, *, image_size: int,
                   cache_dir: Path | None = None) -> DecodedImages:
    """The photos of `rows`, decoded: in memory, or with `cache_dir` in the disk cache there
    (built once, then reused while the photos and the size stay the same)."""
    paths = [Path(images_dir) / p for p in rows["path"]]
    needed = decoded_bytes(len(paths), image_size)
    started = time.perf_counter()
    if cache_dir is None:
        images = read_images(paths, image_size, max_pixels=None)
        log.info("decoded %d images at %d px in %.1f s, %.0f MB in memory", len(images),
                 image_size, time.perf_counter() - started, needed / 2**20)
        return InMemory(images)
    target = Path(cache_dir) / f"{cache_key(rows, image_size)}{CACHE_SUFFIX}"
    if target.exists() and target.stat().st_size == needed:
        log.info("reading %d images at %d px from the disk cache %s (%.0f MB)", len(paths),
                 image_size, target, needed / 2**20)
    else:
        build_disk_cache(paths, image_size, target)
        log.info("decoded %d images at %d px into the disk cache %s in %.1f s (%.0f MB)",
                 len(paths), image_size, target, time.perf_counter() - started, needed / 2**20)
    return DiskCache(target, len(paths), image_size)


def batches(
    store: DecodedImages,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    share: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], float32 labels of shape (n, 1)) from `store`.

    With `shuffle` the order changes each epoch, reproducibly from `seed`. `share` (index,
    count) keeps one worker's contiguous part of every batch, so that each of `count`
    workers reads only its own photos; its batches are then about batch_size / count.
    """
    labels = np.asarray(labels, dtype=np.float32)
    image_size = store.image_size
    worker, workers = share

    def take(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if workers > 1:
            indices = np.array_split(indices, workers)[worker]
        return store.take(indices), labels[indices][:, None]

    def load(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, batch_labels = tf.numpy_function(take, [indices], [tf.uint8, tf.float32],
                                                 stateful=False)
        images.set_shape([None, image_size, image_size, 3])
        batch_labels.set_shape([None, 1])
        # The cast happens per batch, so float32 exists only for the batches in flight.
        return tf.cast(images, tf.float32), batch_labels

    dataset = tf.data.Dataset.range(len(store))
    if shuffle:
        dataset = dataset.shuffle(len(store), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def image_dataset(
    rows: pd.DataFrame,
    images_dir: Path,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    cache_dir: Path | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], float32 labels of shape (n, 1)) for `rows`.

    The rows come from a split manifest, so their files were checked by the split stage;
    a file that no longer reads fails here with ImageRefused naming it. See `batches` for
    the order; `cache_dir` puts the pixels in the disk cache there instead of in memory.
    """
    store = decoded_images(rows, images_dir, image_size=image_size, cache_dir=cache_dir)
    return batches(store, rows["label_index"].to_numpy(), batch_size=batch_size,
                   shuffle=shuffle, seed=seed)
