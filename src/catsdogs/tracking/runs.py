"""Runs: opening and ending one, and what a stage logs into it.

Stages open runs in the experiment `catsdogs`, one per model, named after it, tagged with
their owner (`dead_runs`), the git commit, the DVC stage and experiment, and the machine a
run trained on; they log flattened params, per-epoch metrics, figures and text, and the data
they read as MLflow datasets (one per split of the manifest, with its content hashes). A run
ends FINISHED, FAILED or (Ctrl-C) KILLED. Reads git and the environment DVC sets; writes
to the tracking store only.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from catsdogs.core.errors import interrupted
from catsdogs.core.params import flatten
from catsdogs.tracking.dead_runs import owner_tags
from catsdogs.tracking.store import project_root
from catsdogs.tracking.writes import holding_interrupts, write
from catsdogs.training.history import EPOCH_METRICS

# The machine a run trained on: catsdogs.machine.fingerprint, .cpu, .onednn_isa, ...
MACHINE_TAG_PREFIX = "catsdogs.machine."
# Where each split of the manifest is used, as MLflow names dataset contexts.
DATASET_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}


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
        with holding_interrupts():
            active = write(lambda: mlflow.start_run(run_name=name,
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
            with holding_interrupts():
                write(lambda: MlflowClient().set_terminated(run_id, status))
                write(lambda: mlflow.end_run(status))


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
    write(lambda: mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()}))


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """`metrics` flattened to dotted keys (with `prefix`), numbers only, as floats."""
    return {
        f"{prefix}{k}": float(v)
        for k, v in flatten(metrics).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, prefix: str = "") -> None:
    """Log the numeric leaves of a (nested) metrics dict; strings and lists are skipped."""
    numeric = numeric_metrics(metrics, prefix)
    write(lambda: mlflow.log_metrics(numeric, step=step))


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch hook for training: the EPOCH_METRICS in `logs` at step=epoch."""
    log_metrics({k: v for k, v in logs.items() if k in EPOCH_METRICS}, step=epoch)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file into the active run's artifacts."""
    write(lambda: mlflow.log_artifact(str(path), artifact_path=artifact_path))


def log_text(text: str, artifact_file: str) -> None:
    """Store text (e.g. a model summary) as an artifact file of the active run."""
    write(lambda: mlflow.log_text(text, artifact_file))


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
    write(lambda: MlflowClient().log_inputs(run_id, datasets=inputs))
    return datasets
