"""Each stage as a user runs it: the click command, its files, its errors, its MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import (
    PROJECT_ROOT,
    load_stage,
    project_params,
    small_params,
    transfer_entry,
    write_params,
)

from catsdogs.core.machine import describe

# The zoo's first model (M1, the small CNN, in the committed params).
M1 = next(iter(project_params()["models"]))


def train_args(name: str) -> list[str]:
    return ["--model", name, "--out", f"models/{name}", "--metrics", f"metrics/train/{name}.json",
            "--history", f"metrics/history/{name}.csv", "--figures", f"plots/train/{name}"]


def evaluate_args(name: str) -> list[str]:
    return ["--model", name, "--model-dir", f"models/{name}", "--metrics", f"metrics/eval/{name}.json",
            "--predictions", f"metrics/predictions/{name}.csv", "--figures", f"plots/eval/{name}"]


TRAIN_ARGS = train_args(M1)


def invoke(stage: str, args: list[str]):
    result = CliRunner().invoke(load_stage(stage), args, catch_exceptions=False)
    return result


@pytest.fixture()
def project(tmp_path: Path, dataset_zip: Path, tracking_store: str, monkeypatch) -> Path:
    """A working folder with small params, the data downloaded and split."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", small_params(dataset_zip))
    assert invoke("download", []).exit_code == 0
    assert invoke("split", []).exit_code == 0
    return tmp_path


def test_download_and_split_write_their_outputs(project: Path, dataset_zip: Path) -> None:
    [record] = json.loads((project / "metrics/download.json").read_text())["sources"]
    assert record["size_bytes"] == dataset_zip.stat().st_size and len(record["sha256"]) == 64
    assert (record["kind"], record["folder"]) == ("zip", ".")
    assert (project / "data/raw/cats_and_dogs_filtered/train/cats/cat.0.jpg").is_file()
    data = json.loads((project / "metrics/data.json").read_text())
    assert data["splits"]["test"]["count"] == {"cat": 2, "dog": 2}
    assert data["sources"] == {".": {"layout": "tutorial", "files": 44, "labelled": 44, "photos": 44}}
    manifest = pd.read_csv(project / "data/split/manifest.csv")
    assert len(manifest) == 44 and set(manifest["split"]) == {"train", "validation", "test"}
    assert (project / "plots/data/samples.png").stat().st_size > 1000
    runs = mlflow.search_runs(experiment_names=["catsdogs"])
    assert set(runs["tags.mlflow.runName"]) == {"download", "split"}
    download_run = runs[runs["tags.mlflow.runName"] == "download"].iloc[0]
    assert download_run["params.download.sha256"] == record["sha256"]


def test_download_with_a_wrong_sha256_fails_clearly(tmp_path: Path, dataset_zip: Path,
                                                    tracking_store: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = small_params(dataset_zip)
    params["download"]["sha256"] = "ab" * 32
    write_params(tmp_path / "params.yaml", params)
    result = invoke("download", [])
    assert result.exit_code == 1
    assert "sha256 mismatch" in result.output and "abab" in result.output
    assert not (tmp_path / "data/raw").exists()


def test_unknown_params_key_fails_with_its_name(tmp_path: Path, dataset_zip: Path,
                                                tracking_store: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = small_params(dataset_zip)
    params["download"]["timeout"] = 5
    write_params(tmp_path / "params.yaml", params)
    result = invoke("download", [])
    assert result.exit_code == 1 and "unknown setting 'download.timeout'" in result.output


def test_train_and_evaluate_m1(project: Path) -> None:
    result = invoke("train", TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    assert (project / f"models/{M1}/model.keras").is_file()
    run_id = (project / f"models/{M1}/mlflow_run_id").read_text().strip()
    metrics = json.loads((project / f"metrics/train/{M1}.json").read_text())
    history = pd.read_csv(project / f"metrics/history/{M1}.csv")
    # One epoch on the fixture's 16 validation photos: its history's row, in sixteenths.
    assert metrics["val_accuracy"] == history["val_accuracy"].iloc[-1] and metrics["best_epoch"] == 1
    assert (metrics["val_accuracy"] * 16).is_integer()
    # Settings, size and timings sit beside the model, not among the metrics DVC diffs.
    assert set(metrics) == {"val_accuracy", "val_loss", "accuracy", "loss", "best_val_accuracy",
                            "best_val_loss", "best_epoch"}
    trained = json.loads((project / f"models/{M1}/training.json").read_text())
    assert trained["epochs"] == 1 and trained["params"]["total"] > 0
    assert trained["images_per_second"] > 0 and trained["seconds"] > 0
    assert (trained["image_size"], trained["batch_size"], trained["precision"]) == (32, 8, "float32")
    # Where it trained: in the model folder and as run tags.
    machine = json.loads((project / f"models/{M1}/machine.json").read_text())
    assert machine == describe()
    history = pd.read_csv(project / f"metrics/history/{M1}.csv")
    assert list(history.columns[:5]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["val_accuracy"].iloc[-1] == pytest.approx(metrics["val_accuracy"])
    assert (project / f"plots/train/{M1}/curves.png").is_file()
    trained = mlflow.get_run(run_id)

    result = invoke("evaluate", evaluate_args(M1))
    assert result.exit_code == 0, result.output
    evaluation = json.loads((project / f"metrics/eval/{M1}.json").read_text())
    predictions = pd.read_csv(project / f"metrics/predictions/{M1}.csv")
    assert evaluation["count"] == 4 == len(predictions)
    assert evaluation["accuracy"] == pytest.approx((predictions.actual == predictions.predicted).mean())
    assert all(p.startswith("cats_and_dogs_filtered/validation/") for p in predictions.path)
    plots = {p.name for p in (project / f"plots/eval/{M1}").iterdir()}
    assert {"confusion_matrix.png", "predictions.png"} <= plots

    run = mlflow.get_run(run_id)
    assert run.info.run_name == M1
    assert run.data.metrics["test_accuracy"] == pytest.approx(evaluation["accuracy"])
    assert run.data.params["train.image_size"] == "32" and run.data.params["model.arch"] == "cnn"
    assert run.data.params["train.precision"] == "float32"
    assert run.data.tags["catsdogs.machine.fingerprint"] == machine["fingerprint"]
    assert run.data.tags["catsdogs.machine.onednn_isa"] == machine["onednn_isa"]
    assert len(mlflow.MlflowClient().get_metric_history(run_id, "val_accuracy")) == 1
    # Evaluation logged into the run without reopening it: it still ends when training did.
    assert (run.info.status, run.info.end_time) == ("FINISHED", trained.info.end_time)


def test_train_refuses_an_unknown_model(project: Path) -> None:
    result = invoke("train", ["--model", "m9", *TRAIN_ARGS[2:]])
    assert result.exit_code == 1 and f"unknown model 'm9'; choose from: {M1}" in result.output
    assert not (project / "models").exists()


def test_unreachable_tracking_server_fails_before_training(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = invoke("train", TRAIN_ARGS)
    assert result.exit_code == 1
    assert "http://127.0.0.1:9 is not reachable" in result.output
    assert not (project / "models").exists()


def test_sigint_mid_training_leaves_no_model_and_a_rerun_completes(project: Path, dataset_zip: Path) -> None:
    write_params(project / "params.yaml", small_params(dataset_zip, epochs=500))
    command = [sys.executable, str(PROJECT_ROOT / "stages/train.py"), *TRAIN_ARGS]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Epoch 3/"):
            proc.send_signal(signal.SIGINT)
            break
    output = "".join(seen) + proc.communicate(timeout=60)[0]
    assert proc.returncode != 0, output[-3000:]
    runs = mlflow.search_runs(experiment_names=["catsdogs"], filter_string=f"run_name = '{M1}'")
    assert list(runs["status"]) == ["KILLED"], output[-3000:]
    assert not (project / f"models/{M1}").exists()
    assert not (project / f"metrics/train/{M1}.json").exists()
    assert not list(project.glob("models/.*tmp*")) and not list(project.glob("plots/train/.*tmp*"))

    write_params(project / "params.yaml", small_params(dataset_zip))
    rerun = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (project / f"models/{M1}/model.keras").is_file()


def test_new_zoo_entries_train_and_evaluate_by_params_alone(
    project: Path, dataset_zip: Path, vivid_zoo: str
) -> None:
    # A second transfer entry with other settings (and its own image size), and an
    # architecture registered only here: params are the only thing that changes.
    params = small_params(dataset_zip)
    _, transfer = transfer_entry(params)
    params["models"]["transfer_avg"] = {**transfer, "pooling": "avg", "dense_units": 16,
                                        "image_size": 40, "epochs": 2}
    params["models"]["vivid"] = {"arch": vivid_zoo, "seed": 3, "dense_units": 8}
    params["pretrained"][vivid_zoo] = "none"
    write_params(project / "params.yaml", params)
    for name, size, epochs in (("transfer_avg", 40, 2), ("vivid", 32, 1)):
        result = invoke("train", train_args(name))
        assert result.exit_code == 0, result.output
        result = invoke("evaluate", evaluate_args(name))
        assert result.exit_code == 0, result.output
        trained = json.loads((project / f"models/{name}/training.json").read_text())
        assert (trained["image_size"], trained["epochs"]) == (size, epochs)
        assert json.loads((project / f"metrics/eval/{name}.json").read_text())["count"] == 4
        assert keras.models.load_model(project / f"models/{name}/model.keras").input_shape == (
            None, size, size, 3)
