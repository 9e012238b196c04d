"""MLflow at the edge: the one module that talks to the tracking store.

Stages use it to open runs (experiment `catsdogs`, one run per model, named after it), log
flattened params, per-epoch metrics, tags, figures and the model. Where runs go:
`MLFLOW_TRACKING_URI` when set, else `sqlite:///<project root>/mlflow.db`, where the project
root is `DVC_ROOT` (DVC points it at the real repository even for `dvc exp run --temp` and
queued runs, which execute in a copy under .dvc/tmp/) or the working directory.
Nothing is logged at import time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "catsdogs"
# Beside the model in models/<name>/: the training run that evaluate and compare log into.
RUN_ID_FILE = "mlflow_run_id"


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


def project_root() -> Path:
    """The repository the runs belong to: DVC_ROOT when DVC runs us, else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or the embedded sqlite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation and migration between processes sharing one sqlite file.

    Two queued experiments (`dvc queue start -j 2`) otherwise race to create the tables and
    the experiment; after that, SQLite's own locking copes with their writes.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect(uri: str | None = None, timeout_s: float = 10.0) -> str:
    """Point MLflow at the store and make sure the experiment exists; return the URI.

    A tracking server that does not answer fails here, before any training, naming the URI.
    """
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
                pass
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            raise TrackingError(
                f"MLflow tracking server {uri} is not reachable ({error}); start it, fix "
                "MLFLOW_TRACKING_URI, or unset it to use the local sqlite store"
            ) from error
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        try:
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                # A local store's default artifact root is ./mlruns of whatever folder creates
                # the experiment: a `dvc exp run --temp` copy would send every artifact into a
                # folder DVC deletes. Pin it beside the store at the project root instead.
                local = uri.startswith("sqlite:///") or uri.startswith("file:")
                location = (project_root() / "mlruns").as_uri() if local else None
                mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        except MlflowException as error:
            raise TrackingError(f"cannot use MLflow tracking store {uri}: {error}") from error
    mlflow.set_experiment(EXPERIMENT)
    return uri


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: {'train': {'epochs': 3}} -> {'train.epochs': 3}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def context_tags(stage: str | None = None) -> dict[str, str]:
    """Git commit and dirty flag, DVC stage and DVC experiment name, where known."""
    tags = {}
    root = project_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        tags["mlflow.source.git.commit"] = commit
        tags["git_commit"] = commit
        tags["git_dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        pass
    if stage or os.environ.get("DVC_STAGE"):
        tags["dvc_stage"] = stage or os.environ["DVC_STAGE"]
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


@contextmanager
def run(name: str, *, run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """Open (or, with `run_id`, reopen) a run named `name`; yield its id.

    A `run_id` the store does not know (another machine's store, a deleted run) starts a new
    run instead, tagged with the id it was meant to continue.
    """
    active = None
    if run_id:
        try:
            mlflow.get_run(run_id)
            active = mlflow.start_run(run_id=run_id)
        except MlflowException:
            log.warning("MLflow run %s is not in %s; starting a new run", run_id, mlflow.get_tracking_uri())
            tags = {**(tags or {}), "continues_run_id": run_id}
    if active is None:
        active = mlflow.start_run(run_name=name)
    with active:
        if tags:
            mlflow.set_tags(dict(tags))
        try:
            yield active.info.run_id
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a failure: say so in `mlflow ui`.
            mlflow.end_run("KILLED")
            raise


def log_params(params: Mapping[str, Any]) -> None:
    """Log nested params flattened to dotted keys (MLflow caps values at 6000 chars)."""
    mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
    """Log the numeric leaves of a (nested) metrics dict; strings and lists are skipped."""
    numeric = {
        f"{prefix}{k}": float(v)
        for k, v in flatten(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    _retry_locked(lambda: mlflow.log_metrics(numeric, step=step))


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch hook for training: loss, accuracy, val_loss, val_accuracy at step=epoch."""
    log_metrics({k: v for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")}, step=epoch)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file into the active run's artifacts."""
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Store text (e.g. a model summary) as an artifact file of the active run."""
    mlflow.log_text(text, artifact_file)


def log_keras_model(model: Any, input_example: Any) -> None:
    """Log a Keras model with MLflow's Keras flavour, a signature and an input example.

    It lands at `runs:/<run id>/model`. Requirements are stated, not inferred: inference
    reloads the model in a subprocess, which costs tens of seconds per model.
    """
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    output = model.predict(input_example, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        # MLflow 3.17's keras flavour writes the input example before it creates the model
        # folder (FileNotFoundError from log_model); saving into a folder we made avoids it.
        path = Path(tmp) / "model"
        path.mkdir()
        mlflow.keras.save_model(
            model,
            str(path),
            signature=infer_signature(input_example, output),
            input_example=input_example,
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        )
        mlflow.log_artifacts(str(path), artifact_path="model")


def load_keras_model(uri: str) -> Any:
    """Load a Keras model logged by `log_keras_model` from a models:/ or runs:/ URI."""
    try:
        return mlflow.keras.load_model(uri)
    except MlflowException as error:
        raise TrackingError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()}: {error.message}"
        ) from error


def register_champion(run_id: str, name: str = "catsdogs", alias: str = "champion") -> str | None:
    """Register `runs:/<run_id>/model` as a new version of `name` and point `alias` at it.

    Returns the version, or None (with a warning) when the run is not in this store, e.g.
    models pulled from a DVC remote that were trained against another tracking server.
    """
    client = MlflowClient()
    try:
        client.get_run(run_id)
    except MlflowException:
        log.warning("MLflow run %s is not in %s; not registering it", run_id, mlflow.get_tracking_uri())
        return None
    version = mlflow.register_model(f"runs:/{run_id}/model", name).version
    client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s as @%s", name, version, alias)
    return str(version)


def _retry_locked(call: Any, attempts: int = 5) -> Any:
    """Retry a store write that met a locked sqlite database (several writers at once)."""
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as error:
            if "locked" not in str(error).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    return None
