"""The whole pipeline through the real `dvc repro`, in a temporary copy of the project."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, small_params, write_params
from mlflow.tracking import MlflowClient

MODELS = ["m1_cnn", "m2_augment", "m3_preprocess", "m4_transfer", "m5_finetune"]


def env() -> dict[str, str]:
    """This interpreter's tools first on PATH, and MLflow's default store: <repo>/mlflow.db."""
    variables = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                 "PYTHONUNBUFFERED": "1"}
    variables.pop("MLFLOW_TRACKING_URI", None)
    return variables


def sh(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path: Path, dataset_zip: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    for folder in ("stages", "src"):
        shutil.copytree(PROJECT_ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_params(repo / "params.yaml", small_params(dataset_zip))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "init")

    # Ctrl-C in the middle of training (SIGINT to dvc and its child, as a terminal sends it)
    # leaves no model behind, and the next `dvc repro` completes.
    slow = small_params(dataset_zip)
    slow["models"]["m1_cnn"]["epochs"] = 500
    write_params(repo / "params.yaml", slow)
    proc = subprocess.Popen(["dvc", "repro", "train@m1_cnn"], cwd=repo, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if line.startswith("Epoch 3/"):
            os.killpg(proc.pid, signal.SIGINT)
            break
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (repo / "models/m1_cnn").exists() and not list(repo.glob("models/.*"))
    write_params(repo / "params.yaml", small_params(dataset_zip))

    first = sh(repo, "dvc", "repro")
    # download and split already ran (and were locked) before the interrupted training.
    expected = {f"train@{m}" for m in MODELS[:4]} | {
        "finetune@m5_finetune", "evaluate_finetune@m5_finetune", "compare"} | {f"evaluate@{m}" for m in MODELS[:4]}
    assert ran_stages(first) == expected

    data = json.loads((repo / "metrics/data.json").read_text())
    assert data["splits"]["train"]["total"] == 24 and data["splits"]["test"]["baseline_accuracy"] == 0.5
    for model in MODELS:
        trained = json.loads((repo / f"metrics/train/{model}.json").read_text())
        evaluated = json.loads((repo / f"metrics/eval/{model}.json").read_text())
        assert 0.0 <= trained["val_accuracy"] <= 1.0 and trained["epochs"] == 1
        assert 0.0 <= evaluated["accuracy"] <= 1.0 and evaluated["count"] == 4
        assert (repo / f"models/{model}/model.keras").is_file()
        assert len(pd.read_csv(repo / f"metrics/history/{model}.csv")) == 1
    # The synthetic classes are easy: the small CNN must beat the coin after one epoch.
    assert json.loads((repo / "metrics/train/m3_preprocess.json").read_text())["val_accuracy"] > 0.5

    # One run per model in the default store at the repo root, with test accuracy logged.
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("catsdogs").experiment_id])
    by_name = {r.info.run_name: r for r in runs if r.info.status == "FINISHED"}
    interrupted = [r for r in runs if r.info.status != "FINISHED"]
    assert [(r.info.run_name, r.info.status) for r in interrupted] == [("m1_cnn", "KILLED")]
    assert set(MODELS) <= set(by_name)
    for model in MODELS:
        assert "test_accuracy" in by_name[model].data.metrics
        tags = by_name[model].data.tags
        assert tags["dvc_stage"] in (f"train@{model}", f"finetune@{model}")
        assert tags["dvc_eval_stage"] in (f"evaluate@{model}", f"evaluate_finetune@{model}")

    # The leaderboard ranks all five by validation accuracy; the registry knows the champion.
    board = pd.read_csv(repo / "metrics/leaderboard.csv")
    assert list(board["model"][:5].sort_values()) == MODELS and board["model"].iloc[-1] == "majority_baseline"
    assert board["val_accuracy"][:5].is_monotonic_decreasing
    champion = client.get_model_version_by_alias("catsdogs", "champion")
    assert champion.run_id == by_name[board["model"][0]].info.run_id

    # Everything cached: a second repro has nothing to do.
    second = sh(repo, "dvc", "repro")
    assert ran_stages(second) == set()
    assert "up to date" in sh(repo, "dvc", "status")

    # Changing one model's params re-runs that model's stages and nothing else.
    params = small_params(dataset_zip)
    params["models"]["m1_cnn"]["dropout"] = 0.3
    write_params(repo / "params.yaml", params)
    third = sh(repo, "dvc", "repro")
    assert ran_stages(third) == {"train@m1_cnn", "evaluate@m1_cnn", "compare"}

    # Share through a DVC remote (a local folder here; S3, GCS or SSH work the same): push,
    # clone afresh, pull, and the clone has nothing to reproduce.
    remote = tmp_path / "remote"
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(remote))
    sh(repo, "dvc", "push")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "pull")
    assert (clone / "models/m4_transfer/model.keras").is_file()
    assert "up to date" in sh(clone, "dvc", "status")
    assert ran_stages(sh(clone, "dvc", "repro")) == set()

    # Two queued experiments run side by side (`dvc queue start -j 2`, each in a copy under
    # .dvc/tmp/) and both land, complete, in the repository's own MLflow store.
    for name, dropout in (("qa", "0.35"), ("qb", "0.45")):
        sh(repo, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"models.m1_cnn.dropout={dropout}",
           "train@m1_cnn", "evaluate@m1_cnn")
    sh(repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", sh(repo, "dvc", "queue", "status")):
        assert time.monotonic() < deadline, sh(repo, "dvc", "queue", "logs", "qa")
        time.sleep(3)
    assert sh(repo, "dvc", "queue", "status").count("Success") == 2
    queued = client.search_runs([client.get_experiment_by_name("catsdogs").experiment_id],
                                filter_string="tags.dvc_experiment != ''")
    landed = {(r.data.tags["dvc_experiment"], r.data.params["model.dropout"], r.info.status,
               "test_accuracy" in r.data.metrics) for r in queued}
    assert landed == {("qa", "0.35", "FINISHED", True), ("qb", "0.45", "FINISHED", True)}
