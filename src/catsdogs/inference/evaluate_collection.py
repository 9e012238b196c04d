"""How good is a model on a labelled collection: `catsdogs evaluate PATH`.

Reads a folder, or a zip or tar archive (unpacked into a temporary folder with the download
stage's guards), in any layout of `data.layouts`; classifies every labelled photo with
`predict.classify`, in bounded-memory batches. Returns each photo's verdict and the files
not scored (unlabelled or unreadable, with why); `summary` turns them into accuracy with its
95% interval, per-class precision and recall, and the confusion matrix. Writes nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catsdogs.data.archives import unpack
from catsdogs.data.layouts import DEFAULT_CLASS_NAMES, read_layout
from catsdogs.data.manifest import LABELS
from catsdogs.data.sources import DownloadConfig
from catsdogs.evaluation.scores import class_scores, confusion_matrix
from catsdogs.evaluation.stats import wilson_interval
from catsdogs.inference.predict import Prediction, Skipped, classify

PHOTO_COLUMNS = ["path", "actual", "predicted", "probability_dog", "correct"]


@dataclass(frozen=True)
class CollectionScore:
    """A model's verdict on each labelled photo of a collection, and the files not scored."""

    source: str
    layout: str
    photos: pd.DataFrame  # PHOTO_COLUMNS, paths relative to the collection
    skipped: list[Skipped]

    def summary(self) -> dict[str, Any]:
        """Accuracy with its 95% Wilson interval, per-class precision, recall and count, the
        confusion matrix ([[cat as cat, cat as dog], [dog as cat, dog as dog]]), and the
        misclassified photos."""
        y_true = self.photos["actual"].map(LABELS.index).to_numpy(dtype=int)
        y_pred = self.photos["predicted"].map(LABELS.index).to_numpy(dtype=int)
        correct = int((y_true == y_pred).sum())
        low, high = wilson_interval(correct, len(y_true))
        wrong = self.photos[~self.photos["correct"]]
        return {
            "source": self.source,
            "layout": self.layout,
            "photos": len(y_true),
            "accuracy": correct / len(y_true),
            "accuracy_low": low,
            "accuracy_high": high,
            "classes": class_scores(y_true, y_pred),
            "confusion_matrix": confusion_matrix(y_true, y_pred),
            "skipped": len(self.skipped),
            "misclassified": wrong.drop(columns="correct").to_dict("records"),
        }


@contextmanager
def unpacked(path: Path, caps: DownloadConfig) -> Iterator[Path]:
    """The folder of a collection: `path` itself, or a zip or tar unpacked for the block
    within the download stage's caps (`download.max_files`, `download.max_bytes`)."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-evaluate-") as tmp:
        root = Path(tmp) / "collection"
        unpack(path, root, max_files=caps.max_files, max_bytes=caps.max_bytes, source=str(path))
        yield root


def score_collection(
    model: object,
    path: Path,
    *,
    class_names: Mapping[str, Sequence[str]] = DEFAULT_CLASS_NAMES,
    caps: DownloadConfig | None = None,
    batch_size: int = 64,
    max_pixels: int,
) -> CollectionScore:
    """Classify every labelled photo of the collection at `path` (folder or archive).

    Raises LayoutError when no layout fits; the score may hold no photo, when none read.
    """
    with unpacked(path, caps or DownloadConfig(url=())) as root:
        layout = read_layout(root, class_names)
        labels = {file.path: file.label for file in layout.labelled}
        skipped = [Skipped(str(f.path.relative_to(root)), "no label", f.reason or "no label")
                   for f in layout.files if f.label is None]
        rows = []
        for result in classify(model, list(labels), batch_size=batch_size, max_pixels=max_pixels):
            if isinstance(result, Skipped):
                skipped.append(Skipped(str(Path(result.path).relative_to(root)), result.kind,
                                       result.reason))
                continue
            assert isinstance(result, Prediction)
            actual = labels[Path(result.path)]
            rows.append({"path": Path(result.path).relative_to(root).as_posix(), "actual": actual,
                         "predicted": result.label, "probability_dog": result.probability_dog,
                         "correct": result.label == actual})
    photos = pd.DataFrame(rows, columns=PHOTO_COLUMNS)
    return CollectionScore(str(path), layout.name, photos, skipped)


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary as the lines of a plain-text report."""
    matrix = np.asarray(summary["confusion_matrix"])
    lines = [
        f"{summary['source']} ({summary['layout']}): {summary['photos']} photos scored, "
        f"{summary['skipped']} skipped",
        f"accuracy {summary['accuracy']:.4f} (95% interval {summary['accuracy_low']:.3f}-"
        f"{summary['accuracy_high']:.3f})",
        "",
        f"{'class':<6} {'precision':>9} {'recall':>7} {'photos':>7}",
    ]
    def score(value: float | None, width: int) -> str:
        return f"{value:>{width}.4f}" if value is not None else f"{'n/a':>{width}}"

    for label, scores in summary["classes"].items():
        lines.append(f"{label:<6} {score(scores['precision'], 9)} {score(scores['recall'], 7)} "
                     f"{scores['photos']:>7}")
    width = max(6, len(str(matrix.max())))
    lines += ["", "confusion matrix (rows: actual, columns: predicted)",
              f"{'':<6} " + " ".join(f"{label:>{width}}" for label in LABELS)]
    lines += [f"{label:<6} " + " ".join(f"{n:>{width}}" for n in row)
              for label, row in zip(LABELS, matrix, strict=True)]
    wrong = summary["misclassified"]
    lines += ["", f"misclassified: {len(wrong)}"]
    lines += [f"  {w['actual']:<4} as {w['predicted']:<4} {w['probability_dog']:8.4f}  {w['path']}"
              for w in wrong]
    return lines
