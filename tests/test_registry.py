"""compare, the Model Registry's champion, predict from the registry, and serving it."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import free_port, http_service, load_stage, small_params, write_params
from mlflow.tracking import MlflowClient

from catsdogs.cli import main as catsdogs_cli

CHAMPION = "models:/catsdogs@champion"


def invoke(stage: str, *args: str) -> None:
    result = CliRunner().invoke(load_stage(stage), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dataset_zip: Path) -> Iterator[Path]:
    """Two CNNs trained and evaluated, then compared, in one sqlite store."""
    root = tmp_path_factory.mktemp("project")
    params = small_params(dataset_zip, epochs=2)
    params["models"] = {name: entry for name, entry in params["models"].items()
                        if entry["arch"] == "cnn"}  # the small CNNs: quick to train
    params["finetune"] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        write_params(root / "params.yaml", params)
        invoke("download")
        invoke("split")
        for name in params["models"]:
            invoke("train", "--model", name, "--out", f"models/{name}", "--metrics",
                   f"metrics/train/{name}.json", "--history", f"metrics/history/{name}.csv",
                   "--figures", f"plots/train/{name}")
            invoke("evaluate", "--model", name, "--model-dir", f"models/{name}", "--metrics",
                   f"metrics/eval/{name}.json", "--predictions", f"metrics/predictions/{name}.csv",
                   "--figures", f"plots/eval/{name}")
        invoke("compare")
        yield root


def test_leaderboard_and_champion_alias(project: Path) -> None:
    board = pd.read_csv(project / "metrics/leaderboard.csv")
    assert list(board["model"].iloc[-1:]) == ["majority_baseline"]
    names = list(yaml.safe_load((project / "params.yaml").read_text())["models"])
    val = {n: json.loads((project / f"metrics/train/{n}.json").read_text())["val_accuracy"]
           for n in names}
    best = max(sorted(val), key=lambda n: val[n])
    assert board["model"].iloc[0] == best
    assert json.loads((project / "metrics/champion.json").read_text())["model"] == best
    accuracy = json.loads((project / "metrics/accuracy.json").read_text())
    assert accuracy[best]["val_accuracy"] == pytest.approx(val[best]) and set(accuracy) == set(names)
    version = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_model_version_by_alias(
        "catsdogs", "champion")
    assert version.run_id == (project / f"models/{best}/mlflow_run_id").read_text().strip()
    model_id = (project / f"models/{best}/mlflow_model_id").read_text().strip()
    assert version.source == f"models:/{model_id}"  # registered from the LoggedModel
    assert f"version {version.version}" in (project / "reports/leaderboard.md").read_text()
    curves = pd.read_csv(project / "metrics/curves.csv")
    assert set(curves["model"]) == set(names) and list(curves["epoch"][:2]) == [1, 2]


def test_predict_from_the_registry_matches_the_model_folder(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    photos = str(project / "data/raw/cats_and_dogs_filtered/validation")
    runner = CliRunner()
    from_registry = runner.invoke(catsdogs_cli, ["predict", photos, "--model", CHAMPION, "--format", "csv"])
    from_folder = runner.invoke(catsdogs_cli,
                                ["predict", photos, "--model", f"models/{best}", "--format", "csv"])
    assert from_registry.exit_code == from_folder.exit_code == 0, from_registry.output
    a = [r.split(",") for r in from_registry.stdout.splitlines()[1:]]
    b = [r.split(",") for r in from_folder.stdout.splitlines()[1:]]
    assert len(a) == 20 and [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([float(r[2]) for r in a], [float(r[2]) for r in b], atol=1e-5)


def test_unknown_registry_model_is_a_clear_error(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    result = CliRunner().invoke(catsdogs_cli, ["predict", str(project), "--model", "models:/nope@champion"])
    assert result.exit_code == 2 and "cannot load models:/nope@champion" in result.output


@pytest.mark.slow
def test_served_champion_answers_with_probabilities(project: Path) -> None:
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    with http_service(command, url + "/ping", project / "serve.log", env=env, cwd=project):
        image = np.full((1, 32, 32, 3), 128.0).tolist()
        request = urllib.request.Request(url + "/invocations", data=json.dumps({"inputs": image}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
    assert np.asarray(predictions).shape == (1, 1)
    assert 0.0 <= predictions[0][0] <= 1.0


def compare_in(project: Path, params: dict, *args: str, manifest: str = "data/split/manifest.csv",
               env: dict[str, str] | None = None) -> str:
    """Run compare on `params` (a subset of the zoo) with its outputs aside; its report."""
    side = project / "side"
    side.mkdir(exist_ok=True)
    write_params(side / "params.yaml", params)
    result = CliRunner().invoke(load_stage("compare"), [
        "--params", str(side / "params.yaml"), "--out", str(side / "leaderboard.csv"),
        "--accuracy", str(side / "accuracy.json"), "--curves", str(side / "curves.csv"),
        "--report", str(side / "leaderboard.md"), "--champion", str(side / "champion.json"),
        "--machines", str(side / "machines.json"), "--manifest", manifest, *args],
        env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return (side / "leaderboard.md").read_text()


def test_only_a_better_model_on_the_same_photos_takes_the_champion_alias(project: Path,
                                                                          monkeypatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    params = yaml.safe_load((project / "params.yaml").read_text())
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    val = {n: json.loads((project / f"metrics/train/{n}.json").read_text())["val_accuracy"]
           for n in params["models"]}
    worse = min(sorted(val), key=lambda n: val[n])
    alone = {**params, "models": {worse: params["models"][worse]}}

    def holder(alias: str) -> str:
        version = client.get_model_version_by_alias("catsdogs", alias)
        return version.tags["model_name"]

    # An experiment (inside `dvc exp run`) registers nothing, whatever it scored.
    versions = len(client.search_model_versions("name='catsdogs'"))
    page = compare_in(project, alone, env={"DVC_EXP_NAME": "exp-1"})
    assert "Not registered (inside `dvc exp run` (exp-1))" in page
    assert len(client.search_model_versions("name='catsdogs'")) == versions

    # The worse model, registered: it waits as the challenger; the champion stays.
    page = compare_in(project, alone)
    assert (holder("champion"), holder("challenger")) == (best, worse)
    assert "alias `challenger`: it does not beat the champion" in page
    reason = client.get_model_version_by_alias("catsdogs", "challenger").tags["catsdogs.alias_reason"]
    assert reason.startswith("challenger: it does not beat the champion")

    # Measured on other validation photos, even a better score would not be compared.
    rows = pd.read_csv(project / "data/split/manifest.csv")
    dropped = rows.drop(index=rows.index[rows["split"] == "validation"][0])
    dropped.to_csv(project / "side/manifest.csv", index=False)
    page = compare_in(project, alone, manifest="side/manifest.csv")
    assert holder("champion") == best and "not comparable with the champion" in page

    # Promoted on purpose, the worse one takes it; the better one then wins it back.
    compare_in(project, alone, "--promote")
    assert holder("champion") == worse
    page = compare_in(project, params)
    if val[best] > val[worse]:
        assert holder("champion") == best and "alias `champion`: it beats the champion" in page
    else:  # the tiny data set gave them the same score: a tie keeps the champion
        assert holder("champion") == worse and "a tie keeps the champion" in page
