"""Where decoded photos are kept: in memory within the budget, else a disk cache; the same
batches either way, a cache that follows the photos, and each worker reading its share."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import TINY_SIZE, tiny_params

from catsdogs.data import images as decoding
from catsdogs.data import input_pipeline as pipeline
from catsdogs.data import parallel
from catsdogs.data.images import read_images
from catsdogs.data.input_pipeline import (
    DiskCache,
    InMemory,
    batches,
    cache_key,
    decoded_images,
    fits_in_memory,
    image_dataset,
)
from catsdogs.data.manifest import split_rows
from catsdogs.data.split import build_manifest
from catsdogs.training.train import train_model
from catsdogs.zoo.entries import training_job


@pytest.fixture(scope="module")
def manifest(extracted: Path) -> pd.DataFrame:
    return build_manifest(extracted, test_every=5, strict=False).manifest


def epochs_of(dataset: tf.data.Dataset, count: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for _ in range(count) for images, labels in dataset]


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)


def test_memory_and_disk_give_the_batches_the_earlier_pipeline_gave(
        extracted: Path, manifest: pd.DataFrame, tmp_path: Path) -> None:
    rows = split_rows(manifest, "train")
    # The pipeline before the cache: every photo in a tensor, shuffled element-wise. The
    # committed results were made with it; the index order must be the same.
    images = read_images([extracted / p for p in rows["path"]], TINY_SIZE, max_pixels=None)
    labels = rows["label_index"].astype("float32").to_numpy()
    earlier = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(rows), seed=5)
               .batch(8).map(lambda x, y: (tf.cast(x, tf.float32), y[:, None])))
    common = {"image_size": TINY_SIZE, "batch_size": 8, "shuffle": True, "seed": 5}
    from_memory = image_dataset(rows, extracted, **common)
    from_disk = image_dataset(rows, extracted, cache_dir=tmp_path, **common)

    reference = epochs_of(earlier)
    assert_same_batches(reference, epochs_of(from_memory))
    assert_same_batches(reference, epochs_of(from_disk))
    # Two epochs, two orders: the shuffle is per epoch, not once.
    assert not np.array_equal(reference[0][1], reference[3][1])
    assert list(tmp_path.glob("*.u8"))


def test_the_budget_decides_and_training_is_identical_either_way(
        extracted: Path, manifest: pd.DataFrame, tmp_path: Path) -> None:
    def train(budget_mb: float) -> pd.DataFrame:
        params = tiny_params(epochs=2, memory_budget_mb=budget_mb)
        params["train"]["cache_dir"] = str(tmp_path / "cache")
        _, result = train_model(training_job(params, next(iter(params["models"]))), manifest,
                                extracted)
        return result.history.drop(columns="seconds")

    in_memory = train(4096)
    assert not (tmp_path / "cache").exists()
    on_disk = train(0)
    # One cache file per split: train and validation.
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2
    pd.testing.assert_frame_equal(in_memory, on_disk, check_exact=True)


def test_fits_in_memory_counts_uint8_pixels() -> None:
    one_photo = 160 * 160 * 3
    assert fits_in_memory(1000, 160, 1000 * one_photo / 2**20)
    assert not fits_in_memory(1001, 160, 1000 * one_photo / 2**20)


def test_the_cache_is_reused_while_the_photos_stay_and_rebuilt_when_they_change(
        extracted: Path, manifest: pd.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = split_rows(manifest, "validation")
    builds = []
    real_build = pipeline.build_disk_cache
    monkeypatch.setattr(pipeline, "build_disk_cache",
                        lambda paths, size, target: builds.append(target) or real_build(paths, size, target))

    first = decoded_images(rows, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    again = decoded_images(rows, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    assert isinstance(again, DiskCache) and again.path == first.path and len(builds) == 1

    decoded_images(rows, extracted, image_size=TINY_SIZE + 8, cache_dir=tmp_path)
    changed = rows.copy()
    changed.loc[changed.index[0], "sha256"] = "0" * 64  # the same path, other bytes
    decoded_images(changed, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    assert len(builds) == 3 and len(set(builds)) == 3
    assert cache_key(rows.iloc[::-1], TINY_SIZE) != cache_key(rows, TINY_SIZE)

    # A cache file of the wrong length (a build cut short elsewhere) is built again.
    with open(first.path, "r+b") as damaged:
        damaged.truncate(10)
    store = decoded_images(rows, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    assert len(builds) == 4 and store.path.stat().st_size == len(rows) * TINY_SIZE**2 * 3


def test_an_interrupted_build_leaves_no_cache_file(extracted: Path, manifest: pd.DataFrame,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = split_rows(manifest, "validation")
    calls = []

    def decode_then_stop(path, size, *, max_pixels):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((size, size, 3), np.uint8)

    monkeypatch.setattr(decoding, "read_image", decode_then_stop)
    with pytest.raises(KeyboardInterrupt):
        decoded_images(rows, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


class CountingStore(InMemory):
    """An in-memory store that records which photos were read."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__(images)
        self.read: list[int] = []

    def take(self, indices: np.ndarray) -> np.ndarray:
        self.read.extend(int(i) for i in indices)
        return super().take(indices)


def test_each_worker_reads_only_its_share_of_every_batch() -> None:
    count = 21
    images = np.arange(count, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    labels = np.arange(count) % 2
    whole = epochs_of(batches(InMemory(images), labels, batch_size=8, shuffle=True, seed=1), 1)
    stores = [CountingStore(images), CountingStore(images)]
    shares = [epochs_of(batches(store, labels, batch_size=8, shuffle=True, seed=1,
                                share=(worker, 2)), 1)
              for worker, store in enumerate(stores)]
    # Together the two workers see each whole batch, in order, each photo once.
    for step, (images_whole, labels_whole) in enumerate(whole):
        joined = np.concatenate([shares[0][step][0], shares[1][step][0]])
        np.testing.assert_array_equal(joined, images_whole)
        np.testing.assert_array_equal(np.concatenate([shares[0][step][1], shares[1][step][1]]),
                                      labels_whole)
    assert len(stores[0].read) == 4 + 4 + 3 and len(stores[1].read) == 4 + 4 + 2
    assert set(stores[0].read).isdisjoint(stores[1].read)
    assert sorted(stores[0].read + stores[1].read) == list(range(count))


def test_worker_processes_fill_the_cache_as_one_thread_would(
        extracted: Path, manifest: pd.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = split_rows(manifest, "train")
    monkeypatch.setattr(parallel, "PROCESS_THRESHOLD", 1)  # processes even for a few photos
    monkeypatch.setattr(pipeline, "BUILD_CHUNK", 5)  # several chunks, several writers
    store = decoded_images(rows, extracted, image_size=TINY_SIZE, cache_dir=tmp_path)
    expected = read_images([extracted / p for p in rows["path"]], TINY_SIZE, max_pixels=None)
    np.testing.assert_array_equal(store.take(np.arange(len(rows))), expected)


def test_a_refusal_in_a_worker_process_names_the_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cat.1.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(parallel, "PROCESS_THRESHOLD", 1)
    target = tmp_path / "cache.u8"
    target.write_bytes(bytes(TINY_SIZE * TINY_SIZE * 3))
    with pytest.raises(decoding.ImageRefused, match=r"cat.1.jpg: not a decodable image") as refused:
        parallel.ordered_map(functools.partial(decoding.decode_into_file, str(target), TINY_SIZE),
                             [(0, [tmp_path / "cat.1.jpg"])], label="test")
    assert refused.value.kind == "unreadable"


def test_the_cache_key_follows_the_decoder_code_and_libraries(tmp_path: Path, monkeypatch) -> None:
    from catsdogs.data import images
    from catsdogs.data import input_pipeline as pipeline

    rows = pd.DataFrame({"path": ["cats/cat.1.jpg"], "sha256": ["ab"]})
    fingerprint = pipeline.decoder_fingerprint()
    assert cache_key(rows, TINY_SIZE) == cache_key(rows, TINY_SIZE, fingerprint)
    assert cache_key(rows, TINY_SIZE, "other decoder") != cache_key(rows, TINY_SIZE)

    real_version = pipeline.metadata.version
    for changed in ("pillow", "pillow-heif"):
        pipeline.decoder_fingerprint.cache_clear()
        monkeypatch.setattr(pipeline.metadata, "version", lambda package, changed=changed:
                            "99.0" if package == changed else real_version(package))
        assert pipeline.decoder_fingerprint() != fingerprint, changed
    monkeypatch.undo()

    # An edit to the decoding code: images.py with one more line.
    edited = tmp_path / "images.py"
    edited.write_bytes(Path(images.__file__).read_bytes() + b"\n# edited\n")
    pipeline.decoder_fingerprint.cache_clear()
    try:
        monkeypatch.setattr(images, "__file__", str(edited))
        assert pipeline.decoder_fingerprint() != fingerprint
    finally:
        monkeypatch.undo()
        pipeline.decoder_fingerprint.cache_clear()
    assert pipeline.decoder_fingerprint() == fingerprint
