"""Matplotlib figures of the pipeline, each saved atomically as a PNG.

Reads images (as arrays) and tables handed in; writes one PNG per call. Uses the Agg backend:
no display is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from catsdogs.core.atomic import atomic_dir, atomic_file

# Images in the 3x3 grids of test predictions and mistakes.
GRID = 9


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def _show(ax: plt.Axes, image: np.ndarray, title: str, color: str = "black") -> None:
    ax.imshow(np.clip(np.asarray(image), 0, 255).astype("uint8"))
    ax.set_title(title, fontsize=9, color=color)
    ax.axis("off")


def image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], path: Path, *, columns: int = 3,
    colors: Sequence[str] | None = None, suptitle: str | None = None,
) -> None:
    """Images in rows of `columns`, each under its title (e.g. 3 cats over 3 dogs)."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, title) in enumerate(zip(images, titles, strict=True)):
        _show(axes.ravel()[i], image, title, colors[i] if colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    _save(fig, path)


def training_curves(history: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy and loss per epoch, training vs validation."""
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in ((acc, "accuracy"), (loss, "loss")):
        ax.plot(history["epoch"], history[metric], marker="o", label=f"training {metric}")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def training_figures(
    history: pd.DataFrame, augmentations: Mapping[str, Sequence[np.ndarray]], folder: Path,
    name: str,
) -> None:
    """A training's figures, replacing `folder`: the curves, and a 3x3 grid of draws per
    augmentation layer ({layer name: images}, e.g. from models.augmentation_examples)."""
    with atomic_dir(folder) as tmp:
        training_curves(history, tmp / "curves.png", f"{name}: training curves")
        for layer, draws in augmentations.items():
            image_grid(draws, [layer.replace("_", " ")] * len(draws),
                       tmp / f"augment_{layer.removeprefix('random_')}.png")


def evaluation_figures(
    metrics: Mapping, table: pd.DataFrame, load: Callable[[list[str]], np.ndarray],
    labels: Sequence[str], folder: Path, name: str,
) -> None:
    """An evaluation's figures, replacing `folder`: the confusion matrix, a 3x3 grid spread
    over the test set, and a grid of mistakes. `table` has path, actual, predicted and
    probability_dog per image; `load` turns a list of its paths into images."""
    def grid(rows: pd.DataFrame, path: Path, title: str) -> None:
        shown = rows.head(GRID)
        titles = [f"{r.predicted} ({r.probability_dog:.2f} dog)\ntrue: {r.actual}"
                  for r in shown.itertuples()]
        colors = ["green" if r.predicted == r.actual else "red" for r in shown.itertuples()]
        image_grid(list(load(list(shown["path"]))), titles, path, colors=colors, suptitle=title)

    with atomic_dir(folder) as tmp:
        confusion_matrix(metrics["confusion_matrix"], labels, tmp / "confusion_matrix.png",
                         f"{name}: test accuracy {metrics['accuracy']:.3f}")
        step = max(1, len(table) // GRID)  # a spread of the test set, not just the first class
        grid(table.iloc[::step], tmp / "predictions.png", f"{name}: test predictions")
        mistakes = table[table["predicted"] != table["actual"]]
        if len(mistakes):
            grid(mistakes, tmp / "mistakes.png", f"{name}: misclassified")


def _draw_confusion(ax: plt.Axes, matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> None:
    counts = np.asarray(matrix)
    ax.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > counts.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")


def confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str
) -> None:
    """A labelled confusion matrix: rows actual, columns predicted."""
    fig, ax = plt.subplots(figsize=(4, 4))
    _draw_confusion(ax, matrix, labels)
    ax.set_title(title)
    _save(fig, path)


def curves_compared(
    histories: Mapping[str, pd.DataFrame | None], path: Path, title: str
) -> None:
    """Training and validation accuracy per epoch of several revisions, overlaid."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, history), color in zip(histories.items(), ("tab:gray", "tab:blue"), strict=False):
        if history is None:
            continue
        ax.plot(history["epoch"], history["val_accuracy"], marker="o", color=color,
                label=f"{label} validation")
        ax.plot(history["epoch"], history["accuracy"], linestyle="--", color=color,
                label=f"{label} training")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    _save(fig, path)


def confusion_compared(
    matrices: Mapping[str, Sequence[Sequence[int]] | None], labels: Sequence[str], path: Path,
    title: str,
) -> None:
    """Confusion matrices of several revisions side by side (rows actual, columns predicted)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4 * len(matrices), 4), squeeze=False)
    for ax, (label, matrix) in zip(axes[0], matrices.items(), strict=True):
        ax.set_title(label)
        if matrix is None:
            ax.text(0.5, 0.5, "no metrics", ha="center", va="center")
            ax.axis("off")
            continue
        _draw_confusion(ax, matrix, labels)
    fig.suptitle(title)
    _save(fig, path)
