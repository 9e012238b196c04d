"""What the data set is: its classes and labels, its splits, and the split manifest's schema.

The split stage writes the manifest (`data/split/manifest.csv`), one row per usable image;
training, evaluation and the figures read it through `read_manifest` and `split_rows`. A
model's single output is a logit for "dog": `LOGIT_THRESHOLD` turns it into a label here, for
training's accuracy, evaluation, the predictions table and `catsdogs predict` alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from catsdogs.core.errors import UserError

# The folders of the tutorial's layout, and the splits the manifest assigns.
SOURCE_SPLITS = ("train", "validation")
SPLITS = ("train", "validation", "test")
# The labels. Alphabetical, as Keras' image_dataset_from_directory numbers class folders:
# label_index 0 is cat, 1 is dog, the positive class.
LABELS = ("cat", "dog")
# A logit above this means dog (a probability, its sigmoid, above 0.5): strictly above, as
# Keras' BinaryAccuracy reads it, so training's accuracy and evaluation agree at exactly 0.
LOGIT_THRESHOLD = 0.0
PROBABILITY_THRESHOLD = 0.5

# phash: the perceptual hash near-identical photos are found by (data/near_duplicates.py).
MANIFEST_COLUMNS = ["path", "label", "label_index", "split", "sha256", "width", "height", "bytes",
                    "phash"]
# The columns training and evaluation need; the others record what the split stage saw.
MANIFEST_REQUIRED = ("path", "label_index", "split")


class ManifestError(UserError):
    """The manifest is missing, lacks a column, or has no rows for a split."""


def predicted_index(logits: np.ndarray) -> np.ndarray:
    """Label indices (0 cat, 1 dog) for an array of logits."""
    return (np.asarray(logits) > LOGIT_THRESHOLD).astype(int)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read the manifest CSV; a missing file or column is a ManifestError naming it."""
    if not Path(path).is_file():
        raise ManifestError(f"manifest '{path}' does not exist; run the split stage first")
    manifest = pd.read_csv(path)
    missing = [c for c in MANIFEST_REQUIRED if c not in manifest.columns]
    if missing:
        raise ManifestError(f"manifest '{path}' lacks column(s) {missing}; run the split stage again")
    return manifest


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of one split, in manifest order; an empty split is an error."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ManifestError(f"the manifest has no '{split}' images")
    return rows


def split_digest(manifest: pd.DataFrame, split: str) -> str:
    """A sha256 of one split's photos (their paths, labels and contents, in path order):
    equal for two manifests exactly when that split holds the same labelled photos, whatever
    changed in the others. Two models' validation accuracies compare only under one digest."""
    rows = split_rows(manifest, split).sort_values("path")
    lines = [f"{p}\t{label}\t{sha}" for p, label, sha in
             zip(rows["path"], rows["label"], rows["sha256"], strict=True)]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
