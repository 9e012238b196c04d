"""Where runs go, and a real MLflow tracking server receiving a training run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import free_port, http_service, load_stage, small_params, write_params
from mlflow.tracking import MlflowClient

from catsdogs import tracking


def test_default_store_is_at_the_dvc_root_even_in_a_temp_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "repo/.dvc/tmp/exps/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC sets for --temp/--queue
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'repo/mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    assert tracking.tracking_uri() == f"sqlite:///{copy / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert tracking.tracking_uri() == "http://team:5000"


def test_artifacts_of_a_temp_copy_land_at_the_project_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "repo/.dvc/tmp/exps/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    tracking.connect()
    experiment = MlflowClient().get_experiment_by_name("catsdogs")
    assert experiment.artifact_location == (tmp_path / "repo/mlruns").as_uri()


def test_flatten_params() -> None:
    assert tracking.flatten({"train": {"epochs": 3, "opt": {"lr": 0.1}}, "seed": 1}) == {
        "train.epochs": 3, "train.opt.lr": 0.1, "seed": 1,
    }


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a temporary sqlite store and artifact root."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    with http_service(command, uri + "/health", tmp_path / "server.log"):
        yield uri


def test_training_run_arrives_on_a_tracking_server(
    mlflow_server: str, tmp_path: Path, dataset_zip: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", small_params(dataset_zip, epochs=2))
    for stage, args in (("download", []), ("split", []), ("train", [
        "--model", "m1_cnn", "--out", "models/m1_cnn", "--metrics", "m.json",
        "--history", "h.csv", "--figures", "figs"])):
        result = CliRunner().invoke(load_stage(stage), args, catch_exceptions=False)
        assert result.exit_code == 0, result.output

    client = MlflowClient(mlflow_server)
    run_id = (tmp_path / "models/m1_cnn/mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.run_name == "m1_cnn" and run.info.status == "FINISHED"
    assert run.data.params["model.arch"] == "cnn" and run.data.params["train.epochs"] == "2"
    history = client.get_metric_history(run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/input_example.json"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "figures")} == {"figures/curves.png"}
