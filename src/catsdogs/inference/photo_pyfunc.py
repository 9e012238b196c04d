"""The registered model as MLflow loads and serves it: photos in, a label and P(dog) out.

`PhotoClassifier` is an MLflow pyfunc around a trained Keras model (`models/<name>/model.keras`,
which outputs a logit). It takes one column, IMAGE_COLUMN, of encoded image files: bytes, or
their base64 text. `mlflow models serve` carries binary columns as base64 in JSON and decodes
them before the model sees them (`dataframe_split` / `dataframe_records`; with `inputs` the
model gets the base64 text itself, and decodes it here). Each photo is decoded by
`images.read_image`, the one decode training, evaluation and `catsdogs predict` use: the same
formats, EXIF orientation, pixel cap (read from the header, so a decompression bomb is refused
before it is decoded) and resize, at the model's own input size. It answers one row per photo:
`label` (cat or dog) and `probability_dog`.

A request it cannot answer is refused whole, with MLflow's INVALID_PARAMETER_VALUE, which the
scoring server answers as HTTP 400 with the message: an empty batch, more than
MAX_PHOTOS_PER_REQUEST photos, or a photo that is not base64, over MAX_PHOTO_BYTES, not an
image, truncated or over the pixel cap (named by its row: "photo 3: ..."). The server goes on
serving. A registered version carries a copy of the catsdogs package that logged it, and its
entry point (MLFLOW_ENTRY_POINT, MLflow's models-from-code) imports this module from that
copy where catsdogs is not imported yet, as in `mlflow models serve`: a served version keeps
decoding as it did when it was registered, whatever later code moves. Loaded into a process
that has imported catsdogs already (`catsdogs predict --model models:/...`), MLflow leaves
that process's modules in place: there this module must stay importable by this name.

No TensorFlow at import: `catsdogs predict --server` reads the caps from here.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Sequence
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from catsdogs.data.images import DEFAULT_MAX_PIXELS, ImageRefused, read_image
from catsdogs.data.manifest import LABELS, PROBABILITY_THRESHOLD
from catsdogs.inference.predict import PhotoRefused, PhotoSender

# The request's one column: an encoded image file per row.
IMAGE_COLUMN = "image"
# Photos one request may carry: 64 photos of a few MB each are a few hundred MB of JSON, and
# the scoring server reads a whole body into memory before the model sees it. More photos
# go in more requests.
MAX_PHOTOS_PER_REQUEST = 64
# An encoded photo over this (32 MiB) is refused: phone photos are 2-12 MB.
MAX_PHOTO_BYTES = 32 * 1024 * 1024
# What a refusal of too many pixels tells a client to do: the cap is the served model's.
_PIXEL_LIMIT = "the served model's cap (split.max_pixels when it was registered)"
# The Keras model's name among the pyfunc's artifacts.
KERAS_ARTIFACT = "keras_model"
# The script MLflow runs to make the model when it loads a registered version
# (models-from-code): the version's own copy of catsdogs is first on sys.path then.
MLFLOW_ENTRY_POINT = """\
from mlflow.models import set_model

from catsdogs.inference.photo_pyfunc import PhotoClassifier

set_model(PhotoClassifier())
"""
# How a refusal names the photo, so that a client can tell which one to leave out.
_PHOTO_REFUSED = re.compile(r"photo (\d+): (.*)$", re.DOTALL)
# Base64 text, as `inputs` requests deliver it undecoded.
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/\r\n]+={0,2}\s*")


class RequestRefused(MlflowException):
    """A request the model will not answer: the scoring server's HTTP 400, with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def _from_base64(text: bytes, row: int) -> bytes:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestRefused(f"photo {row}: not valid base64 ({len(text):,} characters); send "
                             "the file's bytes as base64, e.g. `base64 -w0 photo.jpg`") from None


def photo_bytes(value: Any, row: int) -> bytes:
    """The encoded image file in one cell: bytes (as MLflow decodes a binary column from
    base64), or base64 text in a str. RequestRefused names what it is instead."""
    if isinstance(value, str):
        value = _from_base64(value.encode("ascii", errors="replace"), row)
    elif isinstance(value, (bytearray, memoryview, np.bytes_)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise RequestRefused(f"photo {row}: {str(value)[:40]!r} ({type(value).__name__}) is not "
                             f"an image file's bytes; send each photo as base64 text in column "
                             f"'{IMAGE_COLUMN}'")
    if not value:
        raise RequestRefused(f"photo {row}: empty; send the photo file's bytes as base64")
    if len(value) > MAX_PHOTO_BYTES:
        raise RequestRefused(f"photo {row}: {len(value):,} bytes, over the cap of "
                             f"{MAX_PHOTO_BYTES:,} a photo; send a smaller copy of it")
    return value


def read_photo(value: Any, row: int, size: int, max_pixels: int) -> np.ndarray:
    """One cell's photo as (size, size, 3) uint8 pixels, decoded as in training. Bytes that
    are no image but base64 text of one (an `inputs` request: MLflow leaves that format's
    text undecoded) are decoded first. RequestRefused says why a photo is not read."""
    data = photo_bytes(value, row)
    try:
        try:
            return read_image(f"photo {row}", size, max_pixels=max_pixels, data=data,
                              limit_setting=_PIXEL_LIMIT)
        except ImageRefused as refused:
            if refused.kind != "unreadable" or not _BASE64_TEXT.fullmatch(data):
                raise
            try:
                decoded = _from_base64(data, row)
            except RequestRefused:
                raise refused from None  # not base64 either: an unreadable file
            return read_image(f"photo {row}", size, max_pixels=max_pixels,
                              data=photo_bytes(decoded, row), limit_setting=_PIXEL_LIMIT)
    except ImageRefused as refused:
        raise RequestRefused(str(refused)) from None
    except (RequestRefused, MemoryError):
        raise
    except Exception as error:  # a decoder's own failure: this photo's, never a 500 for all
        raise RequestRefused(f"photo {row}: not a decodable image ({type(error).__name__}: "
                             f"{str(error)[:200]})") from None


def decode_photos(values: Sequence[Any], size: int, max_pixels: int) -> np.ndarray:
    """(n, size, size, 3) uint8 pixels of a request's photos, decoded as in training.
    RequestRefused for an empty or oversized batch or the first photo that is not readable."""
    if len(values) == 0:
        raise RequestRefused(f"an empty batch: send at least one photo in column '{IMAGE_COLUMN}'")
    if len(values) > MAX_PHOTOS_PER_REQUEST:
        raise RequestRefused(f"{len(values)} photos in one request, over the cap of "
                             f"{MAX_PHOTOS_PER_REQUEST}: send them in several requests")
    batch = np.empty((len(values), size, size, 3), dtype=np.uint8)
    for row, value in enumerate(values):
        batch[row] = read_photo(value, row, size, max_pixels)
    return batch


def answers(probabilities: np.ndarray) -> pd.DataFrame:
    """One row per photo: its label and P(dog), unrounded (`catsdogs predict` rounds what it
    prints to 6 decimals)."""
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    labels = [LABELS[int(p > PROBABILITY_THRESHOLD)] for p in probabilities]
    return pd.DataFrame({"label": labels, "probability_dog": probabilities})


class PhotoClassifier(mlflow.pyfunc.PythonModel):
    """The pyfunc: `model_config` may set `max_pixels` (the pipeline's split.max_pixels)."""

    def load_context(self, context: Any) -> None:
        # Imported here: the class is importable without TensorFlow.
        from catsdogs.inference.predict import keras_scorer
        from catsdogs.models.model_file import input_size, load_model_file

        model = load_model_file(context.artifacts[KERAS_ARTIFACT])
        self._score = keras_scorer(model)
        self._size = input_size(model)
        self._max_pixels = int((context.model_config or {}).get("max_pixels", DEFAULT_MAX_PIXELS))
        # The scoring server calls predict from several threads at once: photos decode side
        # by side, one batch at a time goes through the model.
        self._model_lock = threading.Lock()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input:
            raise RequestRefused(f"no column '{IMAGE_COLUMN}' (got {list(model_input.columns)}); "
                                 f"send the photos as base64 text in column '{IMAGE_COLUMN}'")
        pixels = decode_photos(list(model_input[IMAGE_COLUMN]), self._size, self._max_pixels)
        with self._model_lock:
            probabilities = self._score(pixels)
        return answers(probabilities)


def refused_photo(message: str) -> PhotoRefused | None:
    """The photo a refusal's message names (RequestRefused's, or the server's 400 that
    carries it), as PhotoRefused; None when it names none."""
    match = _PHOTO_REFUSED.search(message)
    return PhotoRefused(int(match[1]), match[2].strip()) if match else None


def pyfunc_sender(model: Any) -> PhotoSender:
    """(label, P(dog)) per photo from a photo-serving model loaded in this process
    (`mlflow.pyfunc.load_model`), as a served one answers; PhotoRefused names a photo it
    refuses."""
    def send(photos: list[bytes]) -> list[tuple[str, float]]:
        try:
            frame = model.predict(pd.DataFrame({IMAGE_COLUMN: photos}))
        except MlflowException as error:
            if (photo := refused_photo(error.message)) is not None:
                raise photo from None
            raise
        return [(str(label), float(p)) for label, p in
                zip(frame["label"], frame["probability_dog"], strict=True)]

    return send
