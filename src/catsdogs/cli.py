"""The `catsdogs` command: user-facing tools beside the DVC stages.

`catsdogs predict PATH...` classifies photos with a trained model folder (the output of
`train@<model>`) and prints one line per image as a table, CSV or JSON lines.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from catsdogs.stage_support import setup_logging


def _load_model(source: str):
    """A Keras model from a model folder, a .keras file, or an MLflow models:/ or runs:/ URI."""
    if source.startswith(("models:/", "runs:/")):
        from catsdogs import tracking

        try:
            tracking.connect()
            return tracking.load_keras_model(source)
        except tracking.TrackingError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error
    path = Path(source)
    model_file = path / "model.keras" if path.is_dir() else path
    if not model_file.is_file():
        raise click.BadParameter(
            f"'{source}' is not a trained model folder or .keras file; run `dvc repro` "
            "(or `dvc pull`) first, or pass --model models/<name>",
            param_hint="--model",
        )
    import keras

    return keras.models.load_model(model_file)


@click.group()
@click.version_option(package_name="catsdogs")
def main() -> None:
    """catsdogs: a reproducible cats-vs-dogs classifier pipeline (DVC + Keras + MLflow)."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_source", default="models/m4_transfer", show_default=True,
              help="A trained model folder (with model.keras), a .keras file, or an MLflow "
                   "model URI such as models:/catsdogs@champion.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output: aligned table, CSV, or one JSON object per line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded and classified at a time (bounds memory).")
def predict(paths: tuple[Path, ...], model_source: str, fmt: str, batch_size: int) -> None:
    """Classify image files and folders (recursively) as cat or dog."""
    setup_logging()
    model = _load_model(model_source)

    from catsdogs.predict import predict_files

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["path", "label", "probability_dog"])
    count = 0
    for prediction in predict_files(model, list(paths), batch_size=batch_size):
        count += 1
        if writer:
            writer.writerow([prediction.path, prediction.label, prediction.probability_dog])
        elif fmt == "json":
            click.echo(json.dumps(prediction.__dict__))
        else:
            click.echo(f"{prediction.label:<4} {prediction.probability_dog:8.4f}  {prediction.path}")
    if count == 0:
        raise click.ClickException(f"no readable image found in: {', '.join(map(str, paths))}")
