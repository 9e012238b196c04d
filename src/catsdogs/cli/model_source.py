"""Where `catsdogs predict` and `catsdogs evaluate` get their model (--model): a trained model
folder (the output of `train@<model>`), a .keras file, or an MLflow models:/ or runs:/ URI;
without --model, the pipeline's best model, read from metrics/champion.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

# The pipeline's best model by validation accuracy, written by the compare stage.
CHAMPION_FILE = Path("metrics/champion.json")


def _champion_folder(champion_file: Path = CHAMPION_FILE) -> str:
    """models/<name> of the model `champion_file` names: what --model means when not given."""
    try:
        name = json.loads(champion_file.read_text(encoding="utf-8"))["model"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.BadParameter(
            f"no --model given and '{champion_file}' names no model ({error}); run this in the "
            "project folder after `dvc repro` (or `dvc pull`), or give --model",
            param_hint="--model") from error
    return str(Path("models") / name)


def load_model(source: str | None):
    """A Keras model from a model folder, a .keras file, or an MLflow models:/ or runs:/ URI;
    a photo-serving pyfunc (`photo_pyfunc`) where the URI names one, as the registry's versions
    are. None: the pipeline's best model (`_champion_folder`)."""
    source = source or _champion_folder()
    if source.startswith(("models:/", "runs:/")):
        from catsdogs.tracking import logged_models, photo_model, store

        try:
            store.connect()
            if photo_model.takes_photos(source):
                return photo_model.load_photo_model(source)
            return logged_models.load_keras_model(source)
        except store.TrackingError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error
    from catsdogs.models.model_file import ModelFileError, load_model_file

    try:
        return load_model_file(Path(source))
    except ModelFileError as error:
        raise click.BadParameter(str(error), param_hint="--model") from error


MODEL_OPTION_HELP = ("A trained model folder (with model.keras), a .keras file, or an MLflow "
                     "model URI such as models:/catsdogs@champion  [default: the pipeline's "
                     "best model, models/<the model metrics/champion.json names>].")
