"""Where runs go, and the experiment they go to: connecting to the tracking store.

Where runs go: `MLFLOW_TRACKING_URI` when set, else `sqlite:///<project root>/mlflow.db`,
where the project root is `DVC_ROOT` (DVC points it at the real repository even for
`dvc exp run --temp` and queued runs, which execute in a copy under .dvc/tmp/) or the working
directory. `connect` checks that a tracking server answers, creates the experiment
`catsdogs` where it is missing (tagged with its kind, its artifacts beside the store) and
ends the runs dead processes left RUNNING (`dead_runs`). The store lock (a file beside a
sqlite store) serialises what SQLite's own locking does not. Also the address of the
experiment's runs page in `mlflow ui`, and the view of columns stored on the experiment that
it names. Nothing is logged at import time.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from catsdogs.core.errors import UserError
from catsdogs.tracking.dead_runs import end_orphaned_runs
from catsdogs.tracking.writes import holding_interrupts, write

EXPERIMENT = "catsdogs"
# MLflow 3 opens an experiment in the view its kind names; untagged, in the GenAI view.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# The runs page `catsdogs ui` opens. MLflow 3.17 shows no metric column until the user picks
# one (the pick lives in the browser); a view stored on the experiment, in the tag its own
# "share view" writes, and named in the address, shows the accuracies on a first visit.
RUNS_VIEW_KEY = "catsdogs"
RUNS_VIEW_COLUMNS = ("attributes.`Models`", "metrics.`val_accuracy`", "metrics.`test_accuracy`")
# The registered model whose versions are the trained models (`registry`): the store's one
# model name, as EXPERIMENT is its one experiment.
REGISTERED_MODEL = "catsdogs"


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


def project_root() -> Path:
    """The repository the runs belong to: DVC_ROOT when DVC runs us, else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or the embedded sqlite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise, between processes sharing one sqlite file, store creation and migration
    and each champion decision (read the champion, move the alias).

    Two queued experiments (`dvc queue start -j 2`) otherwise race to create the tables and
    the experiment, or both take the champion alias from what they read before the other
    moved it; other writes SQLite's own locking copes with.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path):
        yield


def connect(uri: str | None = None, timeout_s: float = 10.0) -> str:
    """Point MLflow at the store and make sure the experiment exists, tagged; return the URI.

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
    with store_lock(uri), holding_interrupts():
        try:
            experiment = mlflow.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                # A local store's default artifact root is ./mlruns of whatever folder creates
                # the experiment: a `dvc exp run --temp` copy would send every artifact into a
                # folder DVC deletes. Pin it beside the store at the project root instead.
                local = uri.startswith(("sqlite:///", "file:"))
                location = (project_root() / "mlruns").as_uri() if local else None
                experiment_id = mlflow.create_experiment(
                    EXPERIMENT, artifact_location=location, tags=dict([EXPERIMENT_KIND])
                )
            elif experiment.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
                experiment_id = experiment.experiment_id
                MlflowClient().set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
        except MlflowException as error:
            raise TrackingError(f"cannot use MLflow tracking store {uri}: {error}") from error
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
    end_orphaned_runs(experiment_id)
    return uri


def experiment_address(server: str, experiment_id: str) -> str:
    """The page of the experiment's runs in `mlflow ui`, in its model-training view.

    MLflow 3.17 keeps the GenAI / model-training switch in the browser (this URL parameter,
    else local storage, GenAI by default): the experiment's kind tag alone does not pick it.
    The view it names holds the columns (`publish_runs_view` stores it).
    """
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}")


def publish_runs_view(experiment_id: str) -> None:
    """Store the view `experiment_address` names on the experiment: its columns."""
    tag = f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"
    value = json.dumps({"selectedColumns": list(RUNS_VIEW_COLUMNS)})
    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(tag) != value:
        write(lambda: client.set_experiment_tag(experiment_id, tag, value))


def experiment_id() -> str:
    """The id of the experiment runs go to (after `connect`)."""
    return mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
