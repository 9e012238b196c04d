"""`catsdogs evaluate PATH`: score a model on a labelled folder or archive, in any layout the
pipeline reads, and print its accuracy with the 95% interval, per-class precision and
recall, the confusion matrix and the misclassified files (or one CSV row per photo, or the
summary as JSON); files not read are named on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from catsdogs.cli.model_source import MODEL_OPTION_HELP, load_model
from catsdogs.cli.predict import SKIPS_NAMED
from catsdogs.cli.stage_support import setup_logging
from catsdogs.core.errors import UserError
from catsdogs.data.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from catsdogs.inference.predict import Skipped


def _report_skipped(skipped: list[Skipped]) -> None:
    """Name the first skipped files on stderr, then count the rest by kind."""
    from catsdogs.inference.predict import skip_summary

    for item in skipped[:SKIPS_NAMED]:
        click.echo(f"skipped {item.path}: {item.reason}", err=True)
    for line in skip_summary(skipped, SKIPS_NAMED):
        click.echo(line, err=True)


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_source", default=None,
              help=MODEL_OPTION_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True,
              help="table: the summary and the misclassified files; csv: one row per photo; "
                   "json: the summary as one JSON object.")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
              default="params.yaml", show_default=True,
              help="Where split.class_names (which folder and file names mean which class) "
                   "and download.max_files / max_bytes (an archive's caps) are read, when the "
                   "file exists; else the defaults.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded and classified at a time (bounds memory).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse images with more pixels than this.")
def evaluate(path: Path, model_source: str | None, fmt: str, params_path: Path, batch_size: int,
             max_pixels: int) -> None:
    """How good is a model on your photos? PATH is a folder, zip or tar of labelled photos
    in any layout the pipeline reads: the tutorial's train/ + validation/, a folder per class
    at any depth, or files named for their class (cat.1.jpg). Prints accuracy with its 95%
    interval, per-class precision and recall, the confusion matrix and the misclassified
    files; every photo is scored, whatever split a layout gives it."""
    setup_logging()
    from catsdogs.core.params import load_params, read_section
    from catsdogs.data.sources import DownloadConfig
    from catsdogs.data.split import SplitConfig
    from catsdogs.inference.evaluate_collection import PHOTO_COLUMNS, score_collection, summary_lines

    try:
        params = load_params(params_path) if params_path.is_file() else {}
        class_names = (read_section(params, "split", SplitConfig) if "split" in params
                       else SplitConfig()).class_names
        caps = (read_section(params, "download", DownloadConfig) if "download" in params
                else DownloadConfig(url=()))
        model = load_model(model_source)
        score = score_collection(model, path, class_names=class_names, caps=caps,
                                 batch_size=batch_size, max_pixels=max_pixels)
    except UserError as error:
        raise click.ClickException(str(error)) from error
    _report_skipped(score.skipped)
    if score.photos.empty:
        raise click.ClickException(f"no labelled photo of '{path}' could be read "
                                   f"({len(score.skipped)} file(s) skipped, named above)")
    if fmt == "csv":
        score.photos[PHOTO_COLUMNS].to_csv(sys.stdout, index=False, lineterminator="\n")
    elif fmt == "json":
        click.echo(json.dumps(score.summary(), indent=2))
    else:
        click.echo("\n".join(summary_lines(score.summary())))
