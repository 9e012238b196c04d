"""Check every photo once and make the split manifest that everything downstream reads.

Reads one or several sources of photos under the data folder, each in a layout of
`layouts` (the tutorial's train/ + validation/, class folders, or class-named files). Writes
nothing itself: returns the manifest, the files left out (with why), and the groups of
identical and near-identical photos as DataFrames, and the data metrics as a dict, for the
stage to save.

Splits. The tutorial's layout keeps its own: train/ is train; every `test_every`-th file of
each validation class, in sorted order, is test; the rest validation. Any other source is
split by a hash of each photo's bytes against `validation_fraction` and `test_fraction`, so
adding photos never moves one already there and byte-identical copies share a split.
Near-identical photos (`near_duplicates`) are grouped across all sources: a group lands in one
split (the earliest of train, validation, test that its members would take, so adding a photo
can pull a group towards train, never into test), or in its given splits where a source fixes
them; a group whose photos carry different labels is excluded. Each photo is decoded by
`images.read_image`, the same decode training and `predict` use, so a file that passes here
reads the same way there.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from PIL import Image

from catsdogs.core.errors import UserError
from catsdogs.core.params import Range
from catsdogs.data.images import DEFAULT_MAX_PIXELS, ImageRefused, read_file_bytes, read_image
from catsdogs.data.layouts import DEFAULT_CLASS_NAMES, Layout, LayoutError, read_layout
from catsdogs.data.manifest import LABELS, MANIFEST_COLUMNS, SOURCE_SPLITS, SPLITS
from catsdogs.data.near_duplicates import DEFAULT_MAX_BITS, groups, near_pairs, perceptual_hash
from catsdogs.data.parallel import ordered_map

log = logging.getLogger(__name__)

# The size the split checks decode at: any size proves a file decodes; a small one is fast.
CHECK_SIZE = 64
EXCLUDED_COLUMNS = ["path", "kind", "reason"]
DUPLICATE_COLUMNS = ["group", "path", "label", "split", "sha256", "phash"]
LABEL_CONFLICT = "label conflict"
# The split of an excluded member of a duplicate group, in duplicates.csv.
EXCLUDED = "excluded"


class DataError(UserError, ValueError):
    """The sources fit no layout, a split comes out empty, or (strict) a file is left out."""


@dataclass(frozen=True)
class SplitConfig:
    """The `split` params section."""

    test_every: Annotated[int, Range(2)] = 5
    validation_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.2
    test_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.1
    class_names: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CLASS_NAMES))
    near_duplicate_bits: Annotated[int, Range(0, 64)] = DEFAULT_MAX_BITS
    strict: bool = False
    max_pixels: Annotated[int, Range(1)] = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class SplitResult:
    """The manifest, the files left out (with why), the duplicate groups, and each source's
    layout and counts."""

    manifest: pd.DataFrame
    excluded: pd.DataFrame
    duplicates: pd.DataFrame
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def find_dataset_root(images_dir: Path) -> Path:
    """The folder holding the tutorial's `train/` and `validation/`: `images_dir` or its
    only such child."""
    layout = read_layout(images_dir)
    if layout.name != "tutorial":
        raise DataError(f"'{images_dir}' is not in the tutorial's layout (train/ and "
                        f"validation/ with class folders); it reads as {layout.name}")
    return layout.root


def inspect_image(path: Path, *, max_pixels: int) -> tuple[ImageRefused | None, dict[str, Any]]:
    """Decode one file as training will; return (the refusal or None, facts about it)."""
    facts: dict[str, Any] = {}
    try:
        data = read_file_bytes(path)  # once: hashed here, decoded from memory
        facts.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        pixels = read_image(path, CHECK_SIZE, max_pixels=max_pixels, data=data)
    except ImageRefused as refused:
        return refused, facts
    facts["phash"] = perceptual_hash(pixels)
    with Image.open(io.BytesIO(data)) as image:  # the header only: the size as stored
        facts["width"], facts["height"] = image.size
    return None, facts


def hash_split(sha256: str, *, validation_fraction: float, test_fraction: float) -> str:
    """A photo's split from its bytes' sha256: where its first 64 bits fall in [0, 1)."""
    position = int(sha256[:16], 16) / 2**64
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def build_manifest(
    images_dir: Path,
    *,
    test_every: int = 5,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.1,
    class_names: Mapping[str, Sequence[str]] = DEFAULT_CLASS_NAMES,
    near_duplicate_bits: int = DEFAULT_MAX_BITS,
    sources: Sequence[str] = (".",),
) -> SplitResult:
    """Read, check and split the photos of `sources` (folders relative to `images_dir`).

    Manifest paths are relative to `images_dir`, POSIX style, so the manifest does not depend
    on where the data lives. Rows are sorted by split then path: the same tree always gives
    the same manifest. A file no rule labels, one that does not decode or is over
    `max_pixels`, and near-identical photos with different labels are excluded and listed;
    with `strict`, any of them is a DataError instead.
    """
    if test_every < 2:
        raise DataError(f"split.test_every must be at least 2, got {test_every}")
    if validation_fraction + test_fraction >= 1:
        raise DataError(f"split.validation_fraction + split.test_fraction must be below 1 "
                        f"(some photos must train), got {validation_fraction} + {test_fraction}")
    layouts = {}
    for folder in sources:
        try:
            layouts[folder] = read_layout(images_dir / folder, class_names)
        except LayoutError as error:
            where = f"source '{folder}': " if folder != "." else ""
            raise DataError(f"{where}{error}") from None
    excluded: list[dict[str, str]] = []
    candidates = []
    for folder, layout in layouts.items():
        for file in layout.files:
            relative = file.path.relative_to(images_dir).as_posix()
            if file.label is None:
                excluded.append({"path": relative, "kind": "no label", "reason": file.reason or ""})
            else:
                candidates.append((folder, relative, file))
    checked = ordered_map(functools.partial(inspect_image, max_pixels=max_pixels),
                          [file.path for _, _, file in candidates], label="checking photos")
    rows = []
    positions: Counter[tuple[str, str | None, str]] = Counter()
    for (folder, relative, file), (refused, facts) in zip(candidates, checked, strict=True):
        if refused is not None:
            excluded.append({"path": relative, "kind": refused.kind, "reason": refused.reason})
            continue
        if file.given_split is not None:
            # The tutorial's rule: every test_every-th usable file of a validation class.
            key = (folder, file.given_split, file.label)
            positions[key] += 1
            split = file.given_split
            if split == "validation" and positions[key] % test_every == 0:
                split = "test"
        else:
            split = hash_split(facts["sha256"], validation_fraction=validation_fraction,
                               test_fraction=test_fraction)
        rows.append({"path": relative, "label": file.label, "label_index": LABELS.index(file.label),
                     "split": split, "given": file.given_split is not None, "source": folder,
                     **facts})
    for folder, layout in layouts.items():
        _check_tutorial_classes(layout, folder, rows)
    duplicates, conflicts = _place_groups(rows, near_duplicate_bits)
    excluded += conflicts
    excluded_df = pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS)
    excluded_df = excluded_df.sort_values("path", kind="stable").reset_index(drop=True)
    if strict and len(excluded_df):
        listing = "; ".join(f"{r.path} ({r.reason})" for r in excluded_df.itertuples())
        raise DataError(
            f"{len(excluded_df)} file(s) left out and split.strict is true: {listing}. "
            "Remove or fix them, or set split.strict: false to exclude and list them instead."
        )
    kept = [r for r in rows if r["split"] != EXCLUDED]
    manifest = pd.DataFrame(kept, columns=MANIFEST_COLUMNS)
    manifest["split"] = pd.Categorical(manifest["split"], categories=SPLITS, ordered=True)
    manifest = manifest.sort_values(["split", "path"], kind="stable").reset_index(drop=True)
    manifest["split"] = manifest["split"].astype(str)
    _check_splits(manifest, validation_fraction, test_fraction)
    for row in excluded_df.itertuples():
        log.warning("excluded %s: %s", row.path, row.reason)
    summary = {
        folder: {"layout": layout.name, "files": len(layout.files),
                 "labelled": len(layout.labelled),
                 "photos": sum(1 for r in kept if r["source"] == folder)}
        for folder, layout in layouts.items()
    }
    return SplitResult(manifest, excluded_df, duplicates, summary)


def _check_tutorial_classes(layout: Layout, folder: str, rows: list[dict[str, Any]]) -> None:
    """In the tutorial's layout every class folder must keep a usable image."""
    if layout.name != "tutorial":
        return
    present = {(_given_folder(r["split"]), r["label"]) for r in rows
               if r["source"] == folder and r["given"]}
    for split in SOURCE_SPLITS:
        for label in LABELS:
            if (split, label) not in present:
                folder_path = next(f.path.parent for f in layout.labelled
                                   if f.given_split == split and f.label == label)
                raise DataError(f"class folder '{folder_path}' has no usable image")


def _given_folder(split: str) -> str:
    """The source folder a tutorial photo came from: test photos are validation's."""
    return "validation" if split == "test" else split


def _place_groups(rows: list[dict[str, Any]], max_bits: int
                  ) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Group identical and near-identical photos; put each group in one split, or exclude it
    when its labels differ. Updates `rows` in place; returns the groups of two or more as a
    DataFrame and the exclusions."""
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups(len(rows), near_pairs([r["phash"] for r in rows], max_bits))):
        members.setdefault(group, []).append(index)
    listed, conflicts = [], []
    order = {split: rank for rank, split in enumerate(SPLITS)}
    for indices in members.values():
        if len(indices) < 2:
            continue
        group = [rows[i] for i in indices]
        labels = {r["label"] for r in group}
        if len(labels) > 1:
            for row in group:
                others = ", ".join(f"{o['path']} ({o['label']})" for o in group if o is not row)
                conflicts.append({
                    "path": row["path"], "kind": LABEL_CONFLICT,
                    "reason": f"near-identical to {others} with another label; such photos are "
                              "mostly placeholders or mislabelled: fix the label or remove one"})
                row["split"] = EXCLUDED
        else:
            given = [r["split"] for r in group if r["given"]]
            target = min(given or [r["split"] for r in group], key=order.__getitem__)
            for row in group:
                if not row["given"]:
                    row["split"] = target
        name = min(r["path"] for r in group)
        listed += [{"group": name, **{k: r[k] for k in DUPLICATE_COLUMNS[1:]}} for r in group]
    duplicates = pd.DataFrame(listed, columns=DUPLICATE_COLUMNS)
    return duplicates.sort_values(["group", "path"]).reset_index(drop=True), conflicts


def _check_splits(manifest: pd.DataFrame, validation_fraction: float, test_fraction: float) -> None:
    """Every split must hold photos of every class: a model trained or judged on one class
    alone says nothing."""
    counts = manifest.groupby(["split", "label"]).size()
    for split in SPLITS:
        for label in LABELS:
            if counts.get((split, label), 0) == 0:
                photos = int((manifest["label"] == label).sum())
                raise DataError(
                    f"split '{split}' got no {label} photos: {photos} usable {label} photo(s) "
                    f"in all, of {len(manifest)}, with split.validation_fraction "
                    f"{validation_fraction} and split.test_fraction {test_fraction}; add "
                    f"{label} photos (or check split.class_names), or raise the fractions")


def data_metrics(result: SplitResult) -> dict[str, Any]:
    """Counts per split and class, majority-class baseline per split, each source's layout,
    exclusions by kind, and duplicate groups."""
    manifest = result.manifest
    metrics: dict[str, Any] = {"splits": {}}
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split, "label"]
        counts = {label: int((labels == label).sum()) for label in LABELS}
        total = len(labels)
        metrics["splits"][split] = {
            "count": counts,
            "total": total,
            "baseline_accuracy": round(max(counts.values()) / total, 6) if total else 0.0,
        }
    metrics["sources"] = result.sources
    metrics["excluded"] = len(result.excluded)
    metrics["excluded_by_kind"] = {str(k): int(v) for k, v in
                                   result.excluded["kind"].value_counts().sort_index().items()}
    dupes = result.duplicates
    kept = dupes[dupes["split"] != EXCLUDED]
    metrics["duplicates"] = {
        "groups": int(dupes["group"].nunique()),
        "photos_in_groups": len(dupes),
        "identical_copies": int(len(dupes) - dupes.drop_duplicates(["group", "sha256"]).shape[0]),
        "label_conflict_groups": int(dupes.loc[dupes["split"] == EXCLUDED, "group"].nunique()),
    }
    # Groups still in two splits: only where sources fix the split (the tutorial's layout).
    metrics["cross_split_duplicates"] = int((kept.groupby("group")["split"].nunique() > 1).sum())
    return metrics
