"""Models in MLflow: the Keras LoggedModel of a training run, the photo-serving model that
wraps it, and the test metrics evaluation attaches to it.

The train stage logs each trained Keras model (raw RGB arrays in, P(dog) out) as a
LoggedModel linked to its run, and writes the run's and the model's ids beside the model in
models/<name>/ (`write_ids`; evaluate and compare read them back with `read_ids`). evaluate
logs its test metrics, the test data set and its figures into that run and onto that model.
compare gets the photo-serving model of its candidate (a pyfunc that takes photos and
carries the catsdogs code): the one a registered version already holds, else a new one.
Loading either kind from a models:/ or runs:/ URI, for `catsdogs predict`, is here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from catsdogs.tracking.runs import DATASET_CONTEXTS, known_run, numeric_metrics, run
from catsdogs.tracking.store import REGISTERED_MODEL, TrackingError
from catsdogs.tracking.writes import write

log = logging.getLogger(__name__)

# On a photo-serving LoggedModel and its registered version: the Keras LoggedModel (raw RGB
# arrays in, P(dog) out, logged by the train stage) it wraps, and what it takes.
KERAS_MODEL_TAG = "catsdogs.keras_model_id"
TAKES_TAG, TAKES_PHOTOS = "catsdogs.takes", "photos"
# ... and a digest of the code it carries and its pixel cap: a photo model is made again when
# either changes.
PHOTO_DIGEST_TAG = "catsdogs.photo_model_digest"
# Beside the model in models/<name>/: its training run, and its LoggedModel in that run.
RUN_ID_FILE = "mlflow_run_id"
MODEL_ID_FILE = "mlflow_model_id"


class _KerasFlavor:
    """mlflow.keras, with the model folder made before the input example is written into it.

    MLflow 3.17's keras save_model writes the input example before it creates the folder
    (mlflow/mlflow#16183), so log_model(..., input_example=...) fails; Model.log takes any
    module-like object with save_model.
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> None:
        Path(path).mkdir(parents=True)
        mlflow.keras.save_model(path=path, **kwargs)


def log_keras_model(model: Any, *, name: str, input_example: Any, step: int) -> str:
    """Log a Keras model as an MLflow LoggedModel named `name`, linked to the active run.

    It carries a signature and `input_example`; the run's metrics at `step` (the last epoch)
    are attached to it. Requirements are stated, not inferred: inferring them reloads the
    model in a subprocess, tens of seconds per model. Returns the LoggedModel's id.
    """
    import keras
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    output = model.predict(input_example, verbose=0)
    info = write(lambda: Model.log(
        artifact_path=None, name=name, flavor=_KerasFlavor, step=step, model=model,
        signature=infer_signature(input_example, output), input_example=input_example,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    ))
    return info.model_id


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


def known_model(model_id: str | None) -> bool:
    """Whether this store holds the LoggedModel."""
    if not model_id:
        return False
    try:
        MlflowClient().get_logged_model(model_id)
    except MlflowException:
        return False
    return True


def log_evaluation(
    run_id: str | None,
    model_id: str | None,
    metrics: Mapping[str, Any],
    *,
    name: str,
    test: Any,
    artifacts: Mapping[str, Sequence[Path]],
    tags: Mapping[str, str],
) -> str:
    """Log test metrics, `test` (an MLflow dataset) and artifacts into the training run.

    The run is written to without being reopened, so its end time stays the end of training;
    the metrics (prefixed `test_`) are attached to the LoggedModel `model_id`. A run this store
    does not hold (another machine's store) gets a new run instead, tagged with the id it
    continues. Returns the run id written to.
    """
    client = MlflowClient()
    if not known_run(run_id):
        log.warning("MLflow run %s is not in %s; logging the evaluation to a new run", run_id,
                    mlflow.get_tracking_uri())
        with run(name, tags={**tags, "continues_run_id": str(run_id)}) as new_id:
            pass
        run_id, model_id = new_id, None
    # The input first: metrics logged with a dataset record it too, without its context.
    test_input = DatasetInput(test._to_mlflow_entity(),
                              tags=[InputTag(MLFLOW_DATASET_CONTEXT, DATASET_CONTEXTS["test"])])
    write(lambda: client.log_inputs(run_id, datasets=[test_input]))
    model = model_id if known_model(model_id) else None
    write(lambda: mlflow.log_metrics(numeric_metrics(metrics, "test_"), run_id=run_id, model_id=model,
                                     dataset=test))
    for key, value in tags.items():
        write(lambda k=key, v=value: client.set_tag(run_id, k, v))
    for folder, files in artifacts.items():
        for file in files:
            write(lambda f=file, d=folder: client.log_artifact(run_id, str(f), d))
    return run_id


def load_keras_model(uri: str) -> Any:
    """Load a Keras model logged by `log_keras_model` from a models:/ or runs:/ URI."""
    try:
        return mlflow.keras.load_model(uri)
    except MlflowException as error:
        raise TrackingError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()}: {error.message}"
        ) from error


def write_ids(folder: Path, run_id: str, model_id: str) -> None:
    """Record a model folder's training run and LoggedModel beside the model."""
    (folder / RUN_ID_FILE).write_text(run_id + "\n", encoding="utf-8")
    (folder / MODEL_ID_FILE).write_text(model_id + "\n", encoding="utf-8")


def read_ids(folder: Path) -> tuple[str | None, str | None]:
    """(run id, LoggedModel id) recorded in a model folder; None where absent."""
    def read(name: str) -> str | None:
        path = folder / name
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").strip() or None

    return read(RUN_ID_FILE), read(MODEL_ID_FILE)
