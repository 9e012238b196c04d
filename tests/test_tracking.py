"""Where runs go, and a real MLflow tracking server receiving a training run."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import load_stage, small_params, write_params
from mlflow.tracking import MlflowClient

from catsdogs.core.params import flatten
from catsdogs.tracking import runs, store


def test_default_store_is_at_the_dvc_root_even_in_a_temp_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "repo/.dvc/tmp/exps/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC sets for --temp/--queue
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'repo/mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    assert store.tracking_uri() == f"sqlite:///{copy / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert store.tracking_uri() == "http://team:5000"


def test_artifacts_of_a_temp_copy_land_at_the_project_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "repo/.dvc/tmp/exps/tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    store.connect()
    experiment = MlflowClient().get_experiment_by_name("catsdogs")
    assert experiment.artifact_location == (tmp_path / "repo/mlruns").as_uri()


def test_flatten_params() -> None:
    assert flatten({"train": {"epochs": 3, "opt": {"lr": 0.1}}, "seed": 1}) == {
        "train.epochs": 3, "train.opt.lr": 0.1, "seed": 1,
    }


def rest(server: str, path: str, body: dict | None = None, **query: str) -> dict:
    """One call of the MLflow REST API: GET with query parameters, or POST with a JSON body."""
    url = f"{server}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_model_arrives_on_a_tracking_server_with_its_data_and_registry_entry(
    mlflow_server: str, tmp_path: Path, dataset_zip: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    params = small_params(dataset_zip, epochs=2)
    name = next(iter(params["models"]))
    params["models"] = {name: params["models"][name]}  # m1 alone: compare ranks what there is
    params["finetune"] = {}
    write_params(tmp_path / "params.yaml", params)
    for stage, args in (("download", []), ("split", []), ("train", [
        "--model", name, "--out", f"models/{name}", "--metrics", f"metrics/train/{name}.json",
        "--history", f"metrics/history/{name}.csv", "--figures", f"plots/train/{name}"]),
            ("evaluate", ["--model", name, "--model-dir", f"models/{name}", "--metrics",
                          f"metrics/eval/{name}.json", "--predictions",
                          f"metrics/predictions/{name}.csv", "--figures", f"plots/eval/{name}"]),
            ("compare", [])):
        result = CliRunner().invoke(load_stage(stage), args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / f"metrics/eval/{name}.json").read_text())

    experiment = rest(mlflow_server, "experiments/get-by-name", experiment_name="catsdogs")["experiment"]
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]

    # The run, its curves, and the data it read.
    run_id = (tmp_path / f"models/{name}/mlflow_run_id").read_text().strip()
    run = rest(mlflow_server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["run_name"] == name and run["info"]["status"] == "FINISHED"
    params_logged = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params_logged["model.arch"] == "cnn" and params_logged["train.epochs"] == "2"
    history = rest(mlflow_server, "metrics/get-history", run_id=run_id, metric_key="val_accuracy")
    assert sorted(int(m["step"]) for m in history["metrics"]) == [1, 2]
    inputs = {(i["dataset"]["name"], {t["key"]: t["value"] for t in i["tags"]}["mlflow.data.context"],
               len(i["dataset"]["digest"]) > 0)
              for i in run["inputs"]["dataset_inputs"]}
    assert inputs == {("train", "training", True), ("validation", "validation", True),
                      ("test", "testing", True)}

    # The LoggedModel: linked to the run, with its final validation and its test accuracy.
    model_id = (tmp_path / f"models/{name}/mlflow_model_id").read_text().strip()
    model = rest(mlflow_server, f"logged-models/{model_id}")["model"]
    assert model["info"]["name"] == name and model["info"]["source_run_id"] == run_id
    assert model["info"]["status"] == "LOGGED_MODEL_READY"
    metrics = {m["key"]: m for m in model["data"]["metrics"]}
    assert metrics["test_accuracy"]["value"] == pytest.approx(evaluation["accuracy"])
    assert metrics["test_accuracy"]["dataset_name"] == "test"
    assert "val_accuracy" in metrics
    artifacts = {a.path for a in MlflowClient(mlflow_server).list_logged_model_artifacts(model_id)}
    assert {"MLmodel", "input_example.json", "serving_input_example.json"} <= artifacts

    # The champion: the photo-serving model of that LoggedModel, linked to the same run, with
    # what it scored and where it came from; its code travelled to the server's artifact store.
    champion = rest(mlflow_server, "registered-models/alias", name="catsdogs", alias="champion")
    version = champion["model_version"]
    photo_model_id = version["source"].removeprefix("models:/")
    found = rest(mlflow_server, "logged-models/search",
                 {"experiment_ids": [experiment["experiment_id"]]})["models"]
    assert sorted(m["info"]["model_id"] for m in found) == sorted([model_id, photo_model_id])
    assert version["run_id"] == run_id
    photo_artifacts = {a.path for a in
                       MlflowClient(mlflow_server).list_logged_model_artifacts(photo_model_id)}
    assert {"MLmodel", "photo_model.py", "requirements.txt", "code"} <= photo_artifacts
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags["model_name"] == name and len(tags["params_digest"]) == 16
    assert tags["catsdogs.keras_model_id"] == model_id and tags["catsdogs.takes"] == "photos"
    assert float(tags["test_accuracy"]) == pytest.approx(evaluation["accuracy"], abs=1e-4)
    assert {"val_accuracy", "git_commit"} <= set(tags)

    # compare again: the champion did not change, so no new version.
    result = CliRunner().invoke(load_stage("compare"), [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    versions = rest(mlflow_server, "model-versions/search", filter="name='catsdogs'")["model_versions"]
    assert [v["version"] for v in versions] == [version["version"]]


def test_ctrl_c_while_a_run_starts_ends_it_killed(tmp_path: Path, monkeypatch) -> None:
    # A Ctrl-C raised before the run's block was entered would leave ending the run to
    # MLflow's exit hook, which ends it FINISHED; a second Ctrl-C while the run ends must not
    # cut its ending in half.
    import os
    import signal

    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.connect()
    start_run, set_terminated = mlflow.start_run, MlflowClient.set_terminated

    def interrupted_start(*args, **kwargs):
        active = start_run(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the store write is held
        return active

    def interrupted_end(self, run_id, status=None):
        os.kill(os.getpid(), signal.SIGINT)
        return set_terminated(self, run_id, status)

    monkeypatch.setattr(mlflow, "start_run", interrupted_start)
    monkeypatch.setattr(MlflowClient, "set_terminated", interrupted_end)
    body_ran = []
    with pytest.raises(KeyboardInterrupt), runs.run("interrupted") as run_id:
        body_ran.append(run_id)
    assert body_ran == []  # the interrupt came before the block, once the run had started
    [run] = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("catsdogs").experiment_id])
    assert (run.info.run_name, run.info.status) == ("interrupted", "KILLED")
    assert mlflow.active_run() is None  # ended here, nothing left for the exit hook


def test_ctrl_c_that_a_library_rewords_still_ends_the_run_killed(tmp_path: Path, monkeypatch) -> None:
    # Seen once in 20 interrupted `dvc repro` runs under load: the interrupt landed in
    # TensorFlow's device scope, whose exit raised RuntimeError with it as the context.
    from catsdogs.cli.stage_support import fails_clearly

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.connect()

    @fails_clearly
    def stage() -> None:
        with runs.run("reworded"):
            try:
                raise KeyboardInterrupt
            finally:
                raise RuntimeError("Exiting device scope without proper scope nesting")

    with pytest.raises(KeyboardInterrupt):  # the stage still dies of Ctrl-C
        stage()
    [run] = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("catsdogs").experiment_id])
    assert (run.info.run_name, run.info.status) == ("reworded", "KILLED")


def test_a_failure_is_not_taken_for_ctrl_c() -> None:
    from catsdogs.core.errors import interrupted

    try:
        try:
            raise ValueError("inner")
        finally:
            raise RuntimeError("outer")
    except RuntimeError as error:
        assert not interrupted(error)
