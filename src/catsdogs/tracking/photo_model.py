"""The photo-serving model: an MLflow pyfunc that takes photos, wrapping a trained Keras model.

compare gets the photo-serving model of its candidate (`inference.photo_pyfunc`, carrying the
catsdogs code and pinned requirements): the one logged already for that Keras model, code and
pixel cap, else a new one. `takes_photos` tells a registered version that takes photos from
one that takes arrays; `load_photo_model` loads one for `catsdogs predict --model models:/...`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catsdogs.tracking.logged_models import KERAS_MODEL_TAG
from catsdogs.tracking.runs import known_run
from catsdogs.tracking.store import REGISTERED_MODEL, TrackingError
from catsdogs.tracking.writes import write

log = logging.getLogger(__name__)

# On a photo-serving LoggedModel and its registered version: what it takes, and a digest of
# the code it carries and its pixel cap (a photo model is made again when either changes).
TAKES_TAG, TAKES_PHOTOS = "catsdogs.takes", "photos"
PHOTO_DIGEST_TAG = "catsdogs.photo_model_digest"


def photo_requirements() -> list[str]:
    """What the photo-serving model imports, pinned to the versions that logged it: the
    packages `mlflow models serve --env-manager virtualenv` installs (pillow-heif only where
    installed: without it HEIC photos are refused by name)."""
    from importlib import metadata

    pinned = []
    for package in ("mlflow", "tensorflow", "keras", "numpy", "pandas", "pillow", "pyyaml",
                    "pillow-heif"):
        try:
            pinned.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            if package != "pillow-heif":
                raise
    return pinned


def _package() -> Path:
    import catsdogs

    return Path(catsdogs.__file__).parent


def photo_model_digest(max_pixels: int | None) -> str:
    """What makes a photo model: the catsdogs code it carries, and its pixel cap."""
    import hashlib

    digest = hashlib.sha256(f"max_pixels={max_pixels}".encode())
    for path in sorted(_package().rglob("*.py")):
        digest.update(path.relative_to(_package()).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def log_photo_model(model_folder: Path, *, name: str, run_id: str | None, example_photo: bytes,
                    max_pixels: int | None, tags: Mapping[str, str]) -> str:
    """Log the trained model in `model_folder` (its Keras file) as a pyfunc that takes photos
    (`photo_pyfunc`), tagged `tags`, linked to its training run `run_id` (when this store
    holds it). It carries a copy of the catsdogs package (code_paths) and builds the model
    from it (models-from-code), so that a served version decodes as the code that registered
    it did, whatever later code moves; its signature, `example_photo` as its input example,
    the pixel cap `max_pixels` (None: Pillow's), and pinned requirements. Returns the
    LoggedModel's id."""
    import shutil
    import tempfile

    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    from catsdogs.inference.photo_pyfunc import IMAGE_COLUMN, KERAS_ARTIFACT, MLFLOW_ENTRY_POINT
    from catsdogs.models.model_file import model_file

    signature = ModelSignature(inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
                               outputs=Schema([ColSpec("string", "label"),
                                               ColSpec("double", "probability_dog")]))
    with tempfile.TemporaryDirectory(prefix="catsdogs-code-") as tmp:
        package = Path(tmp) / "catsdogs"
        shutil.copytree(_package(), package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        entry_point = Path(tmp) / "photo_model.py"
        entry_point.write_text(MLFLOW_ENTRY_POINT, encoding="utf-8")
        info = write(lambda: Model.log(
            artifact_path=None, name=name, flavor=mlflow.pyfunc, tags=dict(tags),
            run_id=run_id if known_run(run_id) else None,
            python_model=str(entry_point),
            artifacts={KERAS_ARTIFACT: str(model_file(model_folder))}, code_paths=[str(package)],
            model_config={} if max_pixels is None else {"max_pixels": int(max_pixels)},
            signature=signature, input_example=pd.DataFrame({IMAGE_COLUMN: [example_photo]}),
            pip_requirements=photo_requirements(),
        ))
    return info.model_id


def photo_model(model_folder: Path, *, name: str, run_id: str | None, keras_model_id: str,
                example_photo: bytes, max_pixels: int | None) -> tuple[str, dict[str, str]]:
    """The photo-serving LoggedModel of the trained model in `model_folder` (logged as the
    Keras LoggedModel `keras_model_id`): the one a registered version already holds for the
    same Keras model, code and pixel cap, so that registering it again makes no new version;
    else a new one (log_photo_model). Returns its id, and the tags its version carries."""
    tags = {TAKES_TAG: TAKES_PHOTOS, KERAS_MODEL_TAG: keras_model_id,
            PHOTO_DIGEST_TAG: photo_model_digest(max_pixels)}
    for version in MlflowClient().search_model_versions(f"name='{REGISTERED_MODEL}'"):
        held = version.source.removeprefix("models:/")
        if held != keras_model_id and tags.items() <= (version.tags or {}).items():
            return held, tags
    return log_photo_model(model_folder, name=name, run_id=run_id, example_photo=example_photo,
                           max_pixels=max_pixels, tags=tags), tags


def takes_photos(uri: str) -> bool:
    """Whether the MLflow model at `uri` (models:/..., runs:/...) takes photos: its
    signature's input is photo_pyfunc's one binary column."""
    from mlflow.models import get_model_info

    from catsdogs.inference.photo_pyfunc import IMAGE_COLUMN

    try:
        signature = get_model_info(uri).signature
    except (MlflowException, OSError) as error:
        raise TrackingError(f"cannot load {uri} from {mlflow.get_tracking_uri()}: "
                            f"{getattr(error, 'message', error)}") from error
    if signature is None or signature.inputs is None or signature.inputs.is_tensor_spec():
        return False
    return [(c.name, getattr(c.type, "name", None)) for c in signature.inputs.inputs] == [
        (IMAGE_COLUMN, "binary")]


def load_photo_model(uri: str) -> Any:
    """Load a photo-serving model (log_photo_model) from a models:/ or runs:/ URI. In this
    process the catsdogs already imported runs it, not the copy it carries (see photo_pyfunc):
    a version whose module this code no longer has says to serve it instead."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise TrackingError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()}: {error.message}") from error
    except ImportError as error:
        raise TrackingError(
            f"cannot load {uri} here: it was registered by another version of catsdogs ({error}); "
            f"serve it, which runs the code it carries: mlflow models serve -m {uri} "
            "--env-manager local") from error
