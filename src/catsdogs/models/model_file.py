"""Trained models as files and as services: the model folder, loading it, and P(dog).

A model folder (`models/<name>/`, written by the train stage) holds `MODEL_FILE`, the Keras
model that outputs a logit. `load_model_file` reads it and, when the file is not a Keras
model, says what the file is instead. `with_probability` wraps a model with a sigmoid, so
that the copy registered in MLflow and served over HTTP answers with the probability of dog.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
from keras import layers

from catsdogs.core.errors import UserError

# The Keras file inside a trained model folder.
MODEL_FILE = "model.keras"
PROBABILITY_LAYER = "probability_dog"
_HOW_TO_GET_ONE = ("a model folder holds model.keras as the train stage writes it: run "
                   "`dvc repro` (or `dvc pull`), or pass --model models/<name>")


class ModelFileError(UserError):
    """A model folder or file that is missing or does not hold a Keras model."""


def _describe(path: Path) -> str:
    """What a file that is not a Keras model is, in a few words."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    head = path.read_bytes()[:64]
    if head.startswith(b"\x89HDF"):
        return f"an HDF5 file of {size:,} bytes (Keras 2's .h5 format, not a .keras archive)"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        return f"a zip archive of {len(names)} file(s) without Keras' config.json"
    text = head.decode("utf-8", errors="replace")
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"{size:,} bytes of text starting {text.strip()[:30]!r}"
    return f"{size:,} bytes of binary data, not a zip archive"


def _is_keras_archive(path: Path) -> bool:
    """A .keras file is a zip archive with the model's config.json inside."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def model_file(source: Path) -> Path:
    """The Keras file a model folder or file path names; ModelFileError when there is none."""
    path = Path(source)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise ModelFileError(f"'{source}' is not a trained model folder or .keras file; "
                             + _HOW_TO_GET_ONE)
    return file


def load_model_file(source: Path) -> keras.Model:
    """Load a trained model from its folder (or a .keras file).

    A missing file, or one that is not a Keras model (empty, text, another format, a damaged
    archive), is a ModelFileError saying what the file is and what a model folder holds.
    """
    file = model_file(source)
    if not _is_keras_archive(file):
        raise ModelFileError(f"'{file}' is not a Keras model file: it is {_describe(file)}; "
                             + _HOW_TO_GET_ONE)
    try:
        return keras.models.load_model(file)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise ModelFileError(
            f"'{file}' is a damaged or incompatible Keras model file ({error}); " + _HOW_TO_GET_ONE
        ) from error


def input_size(model: keras.Model) -> int:
    """The image size (pixels a side) a model takes."""
    return int(model.input_shape[1])


def with_probability(model: keras.Model) -> keras.Model:
    """The model with a sigmoid on its logit: outputs P(dog), for serving and predict."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = layers.Activation("sigmoid", name=PROBABILITY_LAYER)(model(inputs, training=False))
    return keras.Model(inputs, outputs, name=f"{model.name}_probability")


def outputs_probability(model: keras.Model) -> bool:
    """Whether `model` ends in with_probability's sigmoid (else it outputs a logit)."""
    return model.layers[-1].name == PROBABILITY_LAYER
