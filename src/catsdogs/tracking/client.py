"""MLflow at the edge: the one module that talks to the tracking store.

Stages use it to open runs (experiment `catsdogs`, one run per model, named after it), log
flattened params, per-epoch metrics, the data they read (MLflow datasets), figures, and the
model as an MLflow LoggedModel that evaluation attaches its test metrics to; `compare`
registers the champion. Where runs go: `MLFLOW_TRACKING_URI` when set, else
`sqlite:///<project root>/mlflow.db`, where the project root is `DVC_ROOT` (DVC points it at
the real repository even for `dvc exp run --temp` and queued runs, which execute in a copy
under .dvc/tmp/) or the working directory. Nothing is logged at import time.

Every write to the store holds Ctrl-C until it completes (`_write`): a KeyboardInterrupt
in the middle of a SQLite transaction leaves the database locked, and the run could then no
longer be marked KILLED.

A process that dies without a chance to end its run (SIGKILL, the OOM killer, a closed
laptop) leaves it RUNNING. So each run records its owner (host, pid, the process's start
time), and `connect` ends, as KILLED with a tag saying how it was found, every RUNNING run of
this host whose owner is gone: `mlflow ui` never shows a dead training as running for longer
than until the next stage starts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
import psutil
from filelock import FileLock
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from catsdogs.core.errors import UserError, interrupted
from catsdogs.core.params import flatten
from catsdogs.evaluation.champion import CHALLENGER, CHAMPION, Standing, champion_decision
from catsdogs.training.history import EPOCH_METRICS

log = logging.getLogger(__name__)

T = TypeVar("T")

EXPERIMENT = "catsdogs"
# MLflow 3 opens an experiment in the view its kind names; untagged, in the GenAI view.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# The runs page `catsdogs ui` opens. MLflow 3.17 shows no metric column until the user picks
# one (the pick lives in the browser); a view stored on the experiment, in the tag its own
# "share view" writes, and named in the address, shows the accuracies on a first visit.
RUNS_VIEW_KEY = "catsdogs"
RUNS_VIEW_COLUMNS = ("attributes.`Models`", "metrics.`val_accuracy`", "metrics.`test_accuracy`")
REGISTERED_MODEL = "catsdogs"
CHAMPION_ALIAS = CHAMPION
# On a registered version: which validation photos its val_accuracy was measured on
# (data.manifest.split_digest), and why it holds its alias.
VALIDATION_DATA_TAG = "validation_data"
ALIAS_REASON_TAG = "catsdogs.alias_reason"
# On a version made from code or params that differ from its git_commit: which files.
UNCOMMITTED_TAG = "catsdogs.uncommitted"
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
# Who owns a run: set when it starts, read when a later process looks for dead owners.
OWNER_HOST, OWNER_PID, OWNER_STARTED = "catsdogs.owner.host", "catsdogs.owner.pid", "catsdogs.owner.started"
# Where the owner's pid means something: its kernel's boot and its pid namespace. Containers
# share their host's name (often) and its boot, never their pid namespace.
OWNER_BOOT, OWNER_PID_NAMESPACE = "catsdogs.owner.boot_id", "catsdogs.owner.pid_namespace"
# The machine a run trained on: catsdogs.machine.fingerprint, .cpu, .onednn_isa, ...
MACHINE_TAG_PREFIX = "catsdogs.machine."
# Set on a run ended KILLED because its owner was gone: by whom, when, and why.
ENDED_BY = "catsdogs.ended_by"
# Where each split of the manifest is used, as MLflow names dataset contexts.
DATASET_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


# -- Ctrl-C and the store ------------------------------------------------------------------

_held = {"depth": 0, "pending": False}


@contextmanager
def _holding_interrupts() -> Iterator[None]:
    """Defer SIGINT to the end of the block (re-entrant; the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = _held["depth"] == 0
    previous = None
    if outermost:
        _held["pending"] = False
        previous = signal.signal(signal.SIGINT, lambda signum, frame: _held.update(pending=True))
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if outermost:
            signal.signal(signal.SIGINT, previous)
            if _held["pending"]:
                _held["pending"] = False
                raise KeyboardInterrupt


def _write(call: Callable[[], T], attempts: int = 5) -> T:
    """Run one store write whole: Ctrl-C waits for it, a locked SQLite file is retried."""
    with _holding_interrupts():
        for attempt in range(attempts):
            try:
                return call()
            except MlflowException as error:
                if "locked" not in str(error).lower() or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


# -- Where runs go ------------------------------------------------------------------------

def project_root() -> Path:
    """The repository the runs belong to: DVC_ROOT when DVC runs us, else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or the embedded sqlite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
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
    with _store_lock(uri), _holding_interrupts():
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
        _write(lambda: client.set_experiment_tag(experiment_id, tag, value))


def experiment_id() -> str:
    """The id of the experiment runs go to (after `connect`)."""
    return mlflow.get_experiment_by_name(EXPERIMENT).experiment_id


def _pid_space() -> dict[str, str]:
    """This process's kernel boot and pid namespace, where the OS says ("" elsewhere)."""
    def read(path: str, link: bool = False) -> str:
        try:
            return os.readlink(path) if link else Path(path).read_text().strip()
        except OSError:
            return ""
    return {OWNER_BOOT: read("/proc/sys/kernel/random/boot_id"),
            OWNER_PID_NAMESPACE: read("/proc/self/ns/pid", link=True)}


def owner_tags() -> dict[str, str]:
    """This process as a run's owner: host, kernel boot, pid namespace, pid and start time
    (a reused pid has another)."""
    me = psutil.Process()
    return {OWNER_HOST: socket.gethostname(), **_pid_space(), OWNER_PID: str(me.pid),
            OWNER_STARTED: f"{me.create_time():.2f}"}


def _owner_alive(tags: Mapping[str, str]) -> bool:
    """Whether the process a run's owner tags name still runs (the same process, not a new
    one that got its pid). Only asked of an owner in this process's pid space."""
    try:
        process = psutil.Process(int(tags[OWNER_PID]))
        return abs(process.create_time() - float(tags[OWNER_STARTED])) < 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess, KeyError, ValueError):
        return False
    except psutil.AccessDenied:  # it exists; another user's
        return True


def _owner_here(tags: Mapping[str, str], space: Mapping[str, str]) -> bool:
    """Whether a run's owner ran where this process's pids mean the same: the same pid
    namespace in the same kernel boot. A run from before these tags (host name only) is
    judged as before, by its pid."""
    if OWNER_PID_NAMESPACE not in tags:
        return True
    return all(tags.get(key) == value and value for key, value in space.items())


def _owner_rebooted(tags: Mapping[str, str], space: Mapping[str, str]) -> bool:
    """Whether a run's owner ran in this pid namespace in an earlier boot of this kernel's
    machine: it started before this boot, so it is gone with it (what a reboot mid-training
    leaves behind)."""
    same_namespace = tags.get(OWNER_PID_NAMESPACE) == space[OWNER_PID_NAMESPACE] != ""
    other_boot = tags.get(OWNER_BOOT) not in (None, "", space[OWNER_BOOT])
    try:
        return same_namespace and other_boot and float(tags[OWNER_STARTED]) < psutil.boot_time()
    except (KeyError, ValueError):
        return False


def end_orphaned_runs(experiment_id: str) -> list[str]:
    """End KILLED every RUNNING run of this host whose owning process is gone: one of this
    kernel boot and pid namespace whose pid no longer runs, or one of this pid namespace
    that started before this boot. Return their ids. Runs owned elsewhere (another host,
    another container on this one), and runs without owner tags, are left as they are."""
    host = socket.gethostname()
    client = MlflowClient()
    found = _write(lambda: client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'",
        max_results=1000))
    ended = []
    space = _pid_space()
    for stale in found:
        tags = stale.data.tags
        if not _owner_rebooted(tags, space) and (
                not _owner_here(tags, space) or _owner_alive(tags)):
            continue  # alive, or another container's (or machine's) pids: not ours to judge
        note = (f"owner process {stale.data.tags.get(OWNER_PID)} on {host} was gone when process "
                f"{os.getpid()} connected at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        run_id = stale.info.run_id
        with _holding_interrupts():
            _write(lambda run_id=run_id, note=note: client.set_tag(run_id, ENDED_BY, note))
            _write(lambda run_id=run_id: client.set_terminated(run_id, "KILLED"))
        log.warning("ended run %s (%s) KILLED: its %s", stale.info.run_id,
                    stale.data.tags.get("mlflow.runName"), note)
        ended.append(stale.info.run_id)
    return ended


# -- Runs ---------------------------------------------------------------------------------

def git_commit(root: Path | None = None) -> tuple[str, bool] | None:
    """(HEAD's commit, whether tracked files differ from it), or None outside git."""
    root = root or project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit, bool(dirty)


def machine_tags(machine: Mapping[str, str]) -> dict[str, str]:
    """The machine a run trained on (`machine.describe()`) as run tags: catsdogs.machine.<key>,
    tags and not metrics, since none of it is a number to compare."""
    return {f"{MACHINE_TAG_PREFIX}{key}": str(value) for key, value in machine.items()}


# Set on a run that went on from an earlier run's saved state (`catsdogs.training.resume`): the dead
# run, and how many of this run's epochs it trained (logged here again from its history).
RESUMED_FROM_TAG = "catsdogs.resumed_from_run"
RESUMED_AFTER_TAG = "catsdogs.resumed_after_epoch"


def resumed_tags(run_id: str | None, epoch: int) -> dict[str, str]:
    """Tags of a run resuming after `epoch`, from the state that run `run_id` saved."""
    return {RESUMED_FROM_TAG: run_id or "unknown", RESUMED_AFTER_TAG: str(epoch)}


def context_tags(stage: str | None = None) -> dict[str, str]:
    """Git commit and dirty flag, DVC stage and DVC experiment name, where known."""
    tags = {}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = tags["git_commit"] = commit[0]
        tags["git_dirty"] = str(commit[1]).lower()
    if stage or os.environ.get("DVC_STAGE"):
        tags["dvc_stage"] = stage or os.environ["DVC_STAGE"]
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


@contextmanager
def run(name: str, *, tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """Open a run named `name`, yield its id, and end it FINISHED, FAILED or (Ctrl-C) KILLED.

    The run ends when the block does: its duration in `mlflow ui` is the block's.
    """
    run_id = None
    status = "FAILED"
    try:
        # A Ctrl-C while the run starts is held until it has started and can be ended
        # KILLED here; raised any earlier, MLflow's exit hook would end it FINISHED.
        with _holding_interrupts():
            active = _write(lambda: mlflow.start_run(run_name=name,
                                                     tags={**owner_tags(), **(tags or {})}))
            run_id = active.info.run_id
        yield run_id
        status = "FINISHED"
    except BaseException as error:
        if interrupted(error):  # Ctrl-C is the user's choice, not a failure: say so in mlflow ui
            status = "KILLED"
        raise
    finally:
        if run_id is not None:
            # Both writes or neither: a second Ctrl-C waits for the end of both. The status
            # first, by run id: mlflow.end_run forgets the active run before it writes, so a
            # retried end_run after a locked-database error would write nothing.
            with _holding_interrupts():
                _write(lambda: MlflowClient().set_terminated(run_id, status))
                _write(lambda: mlflow.end_run(status))


def known_run(run_id: str | None) -> bool:
    """Whether this store holds the run (models pulled from a DVC remote may come from another)."""
    if not run_id:
        return False
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def log_params(params: Mapping[str, Any]) -> None:
    """Log nested params flattened to dotted keys (MLflow caps values at 6000 chars)."""
    _write(lambda: mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()}))


def _numeric(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in flatten(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
    """Log the numeric leaves of a (nested) metrics dict; strings and lists are skipped."""
    numeric = _numeric(metrics, prefix)
    _write(lambda: mlflow.log_metrics(numeric, step=step))


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch hook for training: the EPOCH_METRICS in `logs` at step=epoch."""
    log_metrics({k: v for k, v in logs.items() if k in EPOCH_METRICS}, step=epoch)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file into the active run's artifacts."""
    _write(lambda: mlflow.log_artifact(str(path), artifact_path=artifact_path))


def log_text(text: str, artifact_file: str) -> None:
    """Store text (e.g. a model summary) as an artifact file of the active run."""
    _write(lambda: mlflow.log_text(text, artifact_file))


# -- Data sets ----------------------------------------------------------------------------

def manifest_dataset(rows: pd.DataFrame, split: str, source: Path) -> Any:
    """One split of the manifest as an MLflow dataset: its files, labels and content hashes.

    Its digest depends on which files, with which bytes, are in the split, so two runs on
    different data are told apart in the UI.
    """
    table = rows.loc[rows["split"] == split, ["path", "label", "sha256"]].reset_index(drop=True)
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-file source twice, then warns that a path is ambiguous.
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
        return mlflow.data.from_pandas(table, source=str(source), targets="label", name=split)


def log_datasets(manifest: pd.DataFrame, source: Path, splits: Sequence[str],
                 run_id: str | None = None) -> dict[str, Any]:
    """Record the manifest's `splits` as the inputs of the run (the active one by default)."""
    datasets = {split: manifest_dataset(manifest, split, source) for split in splits}
    inputs = [DatasetInput(dataset._to_mlflow_entity(),
                           tags=[InputTag(MLFLOW_DATASET_CONTEXT, DATASET_CONTEXTS[split])])
              for split, dataset in datasets.items()]
    run_id = run_id or mlflow.active_run().info.run_id
    _write(lambda: MlflowClient().log_inputs(run_id, datasets=inputs))
    return datasets


# -- Models -------------------------------------------------------------------------------

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
    info = _write(lambda: Model.log(
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
        info = _write(lambda: Model.log(
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
    _write(lambda: client.log_inputs(run_id, datasets=[test_input]))
    model = model_id if known_model(model_id) else None
    _write(lambda: mlflow.log_metrics(_numeric(metrics, "test_"), run_id=run_id, model_id=model,
                                      dataset=test))
    for key, value in tags.items():
        _write(lambda k=key, v=value: client.set_tag(run_id, k, v))
    for folder, files in artifacts.items():
        for file in files:
            _write(lambda f=file, d=folder: client.log_artifact(run_id, str(f), d))
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


# -- The registry -------------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """What `register_candidate` did: the model's registry version, the alias it now holds
    (champion or challenger) and why."""

    version: str
    alias: str
    reason: str


def _standing(version: Any) -> Standing:
    tags = version.tags or {}
    score = tags.get("val_accuracy")
    return Standing(str(version.version), float(score) if score else None,
                    tags.get(VALIDATION_DATA_TAG))


def uncommitted_paths(root: Path | None = None) -> list[str]:
    """Tracked files that differ from HEAD, but for those a pipeline run writes itself
    (dvc.lock, metrics/): the uncommitted code or params a result may come from. Empty
    outside git."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root or project_root(), capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    paths = [line[3:].split(" -> ")[-1] for line in status.splitlines() if line.strip()]
    return [p for p in paths if p != "dvc.lock" and not p.startswith("metrics/")]


def _champion(client: MlflowClient) -> Any:
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    except MlflowException:
        return None


def _holds(version: Any, keras_model_id: str) -> bool:
    """Whether registered `version` is the Keras model `keras_model_id`, or wraps it."""
    return keras_model_id in (version.model_id, version.source.removeprefix("models:/"),
                              (version.tags or {}).get(KERAS_MODEL_TAG))


def _takes_photos_instead(candidate: Standing, incumbent: Any, wraps: str, alias: str,
                          reason: str) -> tuple[str, str]:
    """A photo-serving candidate (wrapping the Keras model `wraps`) takes the alias from a
    champion that takes arrays (a version from before models took photos) when it is that
    champion's own model, or at least as good on the same validation photos: the champion
    becomes photo-serving without retraining. Else (alias, reason) as decided."""
    if (incumbent.tags or {}).get(TAKES_TAG) == TAKES_PHOTOS:
        return alias, reason
    if _holds(incumbent, wraps):
        return CHAMPION_ALIAS, (f"the champion's own model (version {incumbent.version}), now "
                                "taking photos")
    theirs = _standing(incumbent)
    if (candidate.validation_data is not None and candidate.validation_data == theirs.validation_data
            and (candidate.val_accuracy or 0.0) >= (theirs.val_accuracy or 0.0)):
        return CHAMPION_ALIAS, (
            f"it takes photos and is as good as the champion, version {incumbent.version}, which "
            f"takes arrays, on the same validation photos: {candidate.val_accuracy:.4f} >= "
            f"{theirs.val_accuracy or 0.0:.4f}")
    return alias, reason


def register_candidate(model_id: str | None, tags: Mapping[str, str], *,
                       promote: bool = False, uncommitted: Sequence[str] = (),
                       wraps: str | None = None) -> Registration | None:
    """Register the LoggedModel `model_id` as a version of `catsdogs` and give it the
    champion alias if it beats the current champion (`compare.champion_decision`: better
    validation accuracy on the same validation photos, from the `val_accuracy` and
    VALIDATION_DATA_TAG tags), else the challenger alias. The reason is tagged on the version.
    A model made from `uncommitted` code or params (`uncommitted_paths`) is tagged so and
    waits as the challenger, unless `promote`d.

    Two compares at once: on a local SQLite store the read of the champion and the move of
    the alias happen under one lock, so the better model ends champion whatever the order.
    A tracking server has no compare-and-set: after the move the champion is read again,
    and where a concurrent compare moved it to a model this one beats, it is handed back.

    A model already registered keeps its version: no new version for an unchanged model. A
    candidate that `wraps` the champion's own Keras model (the photo-serving pyfunc of the
    model that holds the alias) takes the alias: the same numbers, now taking photos.
    Returns None (with a warning) when the model is not in this store, e.g. models pulled
    from a DVC remote that were trained against another tracking server.
    """
    if not known_model(model_id):
        log.warning("LoggedModel %s is not in %s; not registering it", model_id,
                    mlflow.get_tracking_uri())
        return None
    client = MlflowClient()
    tags = {**tags, "git_dirty": str(bool(uncommitted)).lower()}
    if uncommitted:
        tags[UNCOMMITTED_TAG] = ", ".join(uncommitted)[:5000]
    source = f"models:/{model_id}"  # a tracking server's answers carry the source, not model_id
    existing = [v for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")
                if model_id in (v.model_id, v.source.removeprefix("models:/"))]
    if existing:
        registered = existing[0]
    else:
        registered = _write(lambda: mlflow.register_model(source, REGISTERED_MODEL, tags=dict(tags)))
        log.info("registered %s version %s", REGISTERED_MODEL, registered.version)
    version = str(registered.version)
    candidate = Standing(version, float(tags["val_accuracy"]) if "val_accuracy" in tags else None,
                         tags.get(VALIDATION_DATA_TAG))
    with _store_lock(mlflow.get_tracking_uri()):
        incumbent = _champion(client)
        alias, reason = champion_decision(
            candidate, _standing(incumbent) if incumbent else None, promote=promote)
        if alias != CHAMPION_ALIAS and wraps and incumbent is not None:
            alias, reason = _takes_photos_instead(candidate, incumbent, wraps, alias, reason)
        if uncommitted and not promote and alias == CHAMPION_ALIAS:
            alias, reason = CHALLENGER, (
                f"made from uncommitted changes ({', '.join(uncommitted[:3])}"
                f"{', ...' if len(uncommitted) > 3 else ''}): commit them and run again, or "
                "promote it on purpose with `python stages/compare.py --promote`")
        _move_alias(client, version, alias, reason)
    if alias == CHAMPION_ALIAS and not promote:
        _hand_back(client, candidate)
    log.info("%s version %s is %s: %s", REGISTERED_MODEL, version, alias, reason)
    return Registration(version, alias, reason)


def _move_alias(client: MlflowClient, version: str, alias: str, reason: str) -> None:
    _write(lambda: client.set_registered_model_alias(REGISTERED_MODEL, alias, version))
    _write(lambda: client.set_model_version_tag(REGISTERED_MODEL, version, ALIAS_REASON_TAG,
                                                f"{alias}: {reason}"))


def _hand_back(client: MlflowClient, ours: Standing) -> None:
    """After this process made `ours` champion: where another one since moved the alias to a
    version `ours` beats (it decided on what it read before our move), take it back."""
    holder = _champion(client)
    if holder is None or str(holder.version) == ours.version:
        return
    alias, reason = champion_decision(ours, _standing(holder))
    if alias == CHAMPION_ALIAS:
        log.warning("a concurrent compare gave the champion alias to version %s, which version "
                    "%s beats: handing it back", holder.version, ours.version)
        _move_alias(client, ours.version, alias, reason)
        _move_alias(client, str(holder.version), CHALLENGER,
                    f"a concurrent compare made it champion, but version {ours.version} beats it")
