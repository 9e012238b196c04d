"""Models in MLflow: the Keras LoggedModel of a training run and the test metrics evaluation
attaches to it (the photo-serving model that wraps it: `photo_model`).

The train stage logs each trained Keras model (raw RGB arrays in, P(dog) out) as a
LoggedModel linked to its run, and writes the run's and the model's ids beside the model in
models/<name>/ (`write_ids`; evaluate and compare read them back with `read_ids`). evaluate
logs its test metrics, the test data set and its figures into that run and onto that model.
Loading the Keras model from a models:/ or runs:/ URI, for `catsdogs predict`, is here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from catsdogs.tracking.runs import DATASET_CONTEXTS, known_run, numeric_metrics, run
from catsdogs.tracking.store import TrackingError
from catsdogs.tracking.writes import write

log = logging.getLogger(__name__)

# On a photo-serving LoggedModel and its registered version: the Keras LoggedModel (raw RGB
# arrays in, P(dog) out, logged by the train stage) it wraps.
KERAS_MODEL_TAG = "catsdogs.keras_model_id"
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
