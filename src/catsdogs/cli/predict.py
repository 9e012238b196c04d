"""`catsdogs predict PATH...`: classify photos with a trained model folder (the output of
`train@<model>`), an MLflow model, or a model served by `mlflow models serve`, and print
one line per image as a table or CSV, or the verdicts as JSON (one array, or JSON Lines);
files not classified are named on stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from catsdogs.cli.model_source import MODEL_OPTION_HELP, load_model
from catsdogs.cli.stage_support import setup_logging
from catsdogs.core.errors import UserError
from catsdogs.data.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from catsdogs.inference.predict import Prediction, Skipped

# Skipped files named one by one on stderr; beyond this many, counted by reason.
SKIPS_NAMED = 20
# Photos `predict` decodes and classifies at a time with a model loaded here, and sends a
# served model in one request (the files themselves, in base64: a few MB a request).
LOCAL_BATCH_SIZE = 64
SERVER_BATCH_SIZE = 16


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_source", default=None,
              help=MODEL_OPTION_HELP)
@click.option("--server", metavar="URL", default=None,
              help="Send the photo files to a model served by `mlflow models serve` at URL "
                   "(e.g. http://127.0.0.1:5001) instead of loading --model here; the server "
                   "decodes them as training does.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "jsonl"]),
              default="table", show_default=True,
              help="Output: aligned table; CSV; json: one JSON array of {path, label, "
                   "probability_dog} objects (for `jq '.[]'`); jsonl: one such object per line, "
                   "as each batch is classified.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images decoded and classified at a time (bounds memory; with --server, one "
                   "request, at most the served model's cap of 64)  "
                   f"[default: {LOCAL_BATCH_SIZE}; {SERVER_BATCH_SIZE} with --server].")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True,
              help="Refuse images with more pixels than this, read from the file's header "
                   "before decoding (decompression bombs).")
def predict(paths: tuple[Path, ...], model_source: str | None, server: str | None, fmt: str,
            batch_size: int | None, max_pixels: int) -> None:
    """Classify image files and folders (recursively) as cat or dog, with a model loaded
    here (--model) or served over HTTP (--server). Either way each photo is decoded as in
    training, at the model's input size: here, or by the served model from the file's bytes.

    Every file not classified is named on stderr with the reason (beyond 20, counted).
    """
    setup_logging()
    from catsdogs.inference.predict import classify, classify_photos

    def decoded_here(what: str) -> None:
        """--max-pixels is for photos decoded here; a model that takes photos has its own."""
        source = click.get_current_context().get_parameter_source("max_pixels")
        if source is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError(f"--max-pixels is for a model folder decoded here: {what} "
                                   "applies its own cap (split.max_pixels when registered)")

    if server is None:
        model = load_model(model_source)
        if hasattr(model, "unwrap_python_model"):  # the registry's photo-serving pyfunc
            from catsdogs.inference.photo_pyfunc import MAX_PHOTO_BYTES, MAX_PHOTOS_PER_REQUEST, pyfunc_sender

            decoded_here("a registered model")
            results = classify_photos(
                pyfunc_sender(model), list(paths), max_bytes=MAX_PHOTO_BYTES,
                batch_size=min(batch_size or LOCAL_BATCH_SIZE, MAX_PHOTOS_PER_REQUEST))
        else:
            results = classify(model, list(paths), batch_size=batch_size or LOCAL_BATCH_SIZE,
                               max_pixels=max_pixels)
    else:
        if model_source is not None:
            raise click.UsageError("--model and --server each name the model; give one")
        from catsdogs.inference.photo_pyfunc import MAX_PHOTO_BYTES, MAX_PHOTOS_PER_REQUEST
        from catsdogs.inference.server_client import base_url, server_sender

        decoded_here("a served model")
        if (batch_size or 0) > MAX_PHOTOS_PER_REQUEST:
            raise click.BadParameter(f"{batch_size} photos a request is over the served model's "
                                     f"cap of {MAX_PHOTOS_PER_REQUEST}; pass at most that",
                                     param_hint="--batch-size")
        results = classify_photos(server_sender(base_url(server)), list(paths),
                                  batch_size=batch_size or SERVER_BATCH_SIZE,
                                  max_bytes=MAX_PHOTO_BYTES)
    try:
        count = _print_predictions(results, fmt)
    except UserError as error:  # a server that stopped answering or refused a batch midway
        raise click.ClickException(str(error)) from error
    if count == 0:
        raise click.ClickException(f"no readable image found in: {', '.join(map(str, paths))}")


def _print_predictions(results: Iterable[Prediction | Skipped], fmt: str) -> int:
    """Print each Prediction to stdout in `fmt`, as it comes, and each Skipped to stderr
    (beyond SKIPS_NAMED, counted at the end); return how many were classified."""
    from catsdogs.inference.predict import Skipped, skip_summary

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["path", "label", "probability_dog"])
    if fmt == "json":  # the array is written as it fills: memory stays one batch
        click.echo("[", nl=False)
    count = 0
    skipped: list[Skipped] = []
    try:
        for result in results:
            if isinstance(result, Skipped):
                skipped.append(result)
                if len(skipped) <= SKIPS_NAMED:  # as they come: a long run shows them early
                    click.echo(f"skipped {result.path}: {result.reason}", err=True)
                continue
            count += 1
            if writer:
                writer.writerow([result.path, result.label, result.probability_dog])
            elif fmt == "json":
                click.echo(("\n  " if count == 1 else ",\n  ") + json.dumps(result.__dict__),
                           nl=False)
            elif fmt == "jsonl":
                click.echo(json.dumps(result.__dict__))
            else:
                click.echo(f"{result.label:<4} {result.probability_dog:8.4f}  {result.path}")
    finally:
        if fmt == "json":
            click.echo("\n]" if count else "]")
    for line in skip_summary(skipped, SKIPS_NAMED):
        click.echo(line, err=True)
    return count
