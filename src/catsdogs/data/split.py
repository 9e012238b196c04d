"""Check every image once and make the split manifest that everything downstream reads.

Reads an extracted `cats_and_dogs_filtered` tree (`train/` and `validation/`, one folder per
class). Writes nothing itself: returns the manifest, the excluded files and the
cross-split duplicates as DataFrames, and the data metrics as a dict, for the stage to save.
Train is `train/`; the test set is every `test_every`-th file of each validation class in
sorted order; the rest is validation. No file is in two splits. Each image is decoded with
`images.read_image`, the same decode training and `predict` use, so a file that passes here
reads the same way there.
"""

from __future__ import annotations

import hashlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from PIL import Image

from catsdogs.config import Range
from catsdogs.data.manifest import CLASSES, LABELS, MANIFEST_COLUMNS, SOURCE_SPLITS, SPLITS
from catsdogs.errors import UserError
from catsdogs.data.images import DEFAULT_MAX_PIXELS, ImageRefused, read_file_bytes, read_image

log = logging.getLogger(__name__)

# The size the split checks decode at: any size proves a file decodes; a small one is fast.
CHECK_SIZE = 64


class DataError(UserError, ValueError):
    """The extracted tree is not shaped like the data set, or (strict) holds bad files."""


@dataclass(frozen=True)
class SplitConfig:
    """The `split` params section."""

    test_every: Annotated[int, Range(2)] = 5
    strict: bool = False
    max_pixels: Annotated[int, Range(1)] = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class SplitResult:
    """The manifest, the files left out (with why), and content duplicates across splits."""

    manifest: pd.DataFrame
    excluded: pd.DataFrame
    duplicates: pd.DataFrame


def find_dataset_root(images_dir: Path) -> Path:
    """The folder holding `train/` and `validation/`: `images_dir` or its only such child."""
    def is_root(path: Path) -> bool:
        return all((path / name).is_dir() for name in SOURCE_SPLITS)

    if is_root(images_dir):
        return images_dir
    candidates = sorted(p for p in images_dir.iterdir() if p.is_dir() and is_root(p))
    if len(candidates) != 1:
        raise DataError(
            f"'{images_dir}' holds no single data set folder with train/ and validation/ "
            f"(found {len(candidates)}); is it an extracted cats_and_dogs_filtered?"
        )
    return candidates[0]


def inspect_image(path: Path, *, max_pixels: int) -> tuple[str | None, dict[str, Any]]:
    """Decode one file as training will; return (why it is unusable or None, facts about it)."""
    facts: dict[str, Any] = {}
    try:
        data = read_file_bytes(path)  # once: hashed here, decoded from memory
        facts.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        read_image(path, CHECK_SIZE, max_pixels=max_pixels, data=data)
    except ImageRefused as refused:
        return refused.reason, facts
    with Image.open(io.BytesIO(data)) as image:  # the header only: the size as stored
        facts["width"], facts["height"] = image.size
    return None, facts


def _class_files(class_dir: Path) -> list[Path]:
    if not class_dir.is_dir():
        raise DataError(f"class folder '{class_dir}' is missing")
    files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"class folder '{class_dir}' is empty")
    return files


def build_manifest(
    images_dir: Path, *, test_every: int, strict: bool, max_pixels: int = DEFAULT_MAX_PIXELS
) -> SplitResult:
    """Scan, check and split the data set under `images_dir`.

    Manifest paths are relative to `images_dir`, POSIX style, so the manifest does not depend
    on where the data lives. Rows are sorted by split then path: the same tree always gives
    the same manifest. An image over `max_pixels`, or one that does not decode, is excluded
    and listed; with `strict`, it is a DataError instead.
    """
    if test_every < 2:
        raise DataError(f"split.test_every must be at least 2, got {test_every}")
    root = find_dataset_root(images_dir)
    rows, excluded = [], []
    with ThreadPoolExecutor() as pool:  # Pillow decodes without the GIL: every core helps
        for source_split in SOURCE_SPLITS:
            for folder, label in CLASSES.items():
                files = _class_files(root / source_split / folder)
                checked = pool.map(lambda p: inspect_image(p, max_pixels=max_pixels), files)
                good = []
                for path, (problem, facts) in zip(files, checked, strict=True):
                    relative = path.relative_to(images_dir).as_posix()
                    if problem is not None:
                        excluded.append({"path": relative, "reason": problem})
                        continue
                    good.append((relative, facts))
                if not good:
                    raise DataError(
                        f"class folder '{root / source_split / folder}' has no usable image"
                    )
                for index, (relative, facts) in enumerate(good):
                    split = source_split
                    if source_split == "validation" and (index + 1) % test_every == 0:
                        split = "test"
                    rows.append(
                        {"path": relative, "label": label, "label_index": LABELS.index(label),
                         "split": split, **facts}
                    )
    excluded_df = pd.DataFrame(excluded, columns=["path", "reason"])
    if strict and len(excluded_df):
        listing = "; ".join(f"{r.path} ({r.reason})" for r in excluded_df.itertuples())
        raise DataError(
            f"{len(excluded_df)} unusable file(s) and split.strict is true: {listing}. "
            "Remove them, or set split.strict: false to exclude and list them instead."
        )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest["split"] = pd.Categorical(manifest["split"], categories=SPLITS, ordered=True)
    manifest = manifest.sort_values(["split", "path"], kind="stable").reset_index(drop=True)
    manifest["split"] = manifest["split"].astype(str)
    for row in excluded_df.itertuples():
        log.warning("excluded %s: %s", row.path, row.reason)
    return SplitResult(manifest, excluded_df, cross_split_duplicates(manifest))


def cross_split_duplicates(manifest: pd.DataFrame) -> pd.DataFrame:
    """Files whose bytes are identical to a file in another split (a silent leak)."""
    splits_per_hash = manifest.groupby("sha256")["split"].nunique()
    leaking = splits_per_hash[splits_per_hash > 1].index
    dupes = manifest[manifest["sha256"].isin(leaking)][["sha256", "path", "split", "label"]]
    return dupes.sort_values(["sha256", "path"]).reset_index(drop=True)


def data_metrics(result: SplitResult) -> dict[str, Any]:
    """Counts per split and class, majority-class baseline per split, exclusions, leaks."""
    manifest = result.manifest
    metrics: dict[str, Any] = {"splits": {}}
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split, "label"]
        counts = {label: int((labels == label).sum()) for label in LABELS}
        total = int(len(labels))
        metrics["splits"][split] = {
            "count": counts,
            "total": total,
            "baseline_accuracy": round(max(counts.values()) / total, 6) if total else 0.0,
        }
    metrics["excluded"] = int(len(result.excluded))
    metrics["cross_split_duplicates"] = int(result.duplicates["sha256"].nunique())
    return metrics

