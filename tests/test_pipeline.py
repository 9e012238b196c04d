"""The whole pipeline through the real `dvc repro`, in a temporary copy of the project."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_project, project_params, sh, small_params, tool_env, write_params
from mlflow.tracking import MlflowClient

from catsdogs.core.machine import describe
from catsdogs.tracking.dead_runs import ENDED_BY

ZOO = project_params()
MODELS = [*ZOO["models"], *ZOO["finetune"]]
M1 = MODELS[0]


def stdout(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{args}:\n{result.stderr[-3000:]}"
    return result.stdout


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path: Path, dataset_zip: Path, subtests) -> None:
    """One project, one real pipeline run, and every scenario on it as a named subtest:
    a failure in one is reported and the later ones still run."""
    repo = make_project(tmp_path / "project", small_params(dataset_zip))

    # Ctrl-C in the middle of training (SIGINT to dvc and its child, as a terminal sends it)
    # leaves no model behind, and the next `dvc repro` completes.
    slow = small_params(dataset_zip)
    slow["models"][M1]["epochs"] = 500
    write_params(repo / "params.yaml", slow)
    # Both cores busy, as on a CI runner that is also training (benchmarks/interrupts.py
    # repeats this at random moments of the run).
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        proc = subprocess.Popen(["dvc", "repro", f"train@{M1}"], cwd=repo, env=tool_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Epoch 3/"):
                os.killpg(proc.pid, signal.SIGINT)
                break
        seen.append(proc.communicate(timeout=300)[0])
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    output = "".join(seen)[-6000:]
    assert proc.returncode != 0, output
    assert not (repo / f"models/{M1}").exists() and not list(repo.glob("models/.*")), output
    # Read before any catsdogs process connects again (which would end a dead owner's run).
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("catsdogs").experiment_id
    # pretrained, download and split, which ran first, log runs too: they finished.
    statuses = sorted((r.info.run_name, r.info.status) for r in client.search_runs([experiment]))
    # The first model's own architecture's pretrained stage ran, and only that one.
    assert statuses == [("download", "FINISHED"), (M1, "KILLED"), ("pretrained", "FINISHED"),
                        ("split", "FINISHED")], output
    write_params(repo / "params.yaml", small_params(dataset_zip))

    first = sh(repo, "dvc", "repro")
    # Download, split and the first model's own pretrained stage already ran (and were
    # locked) before the interrupted training; the other architectures' run now.
    others = {f"pretrained@{arch}" for arch in ZOO["pretrained"]} - {
        f"pretrained@{ZOO['models'][M1]['arch']}"}
    expected = {f"train@{m}" for m in ZOO["models"]} | {f"evaluate@{m}" for m in ZOO["models"]} | {
        f"finetune@{m}" for m in ZOO["finetune"]} | {f"evaluate_finetune@{m}" for m in ZOO["finetune"]} | {
        "compare"} | others
    assert ran_stages(first) == expected

    with subtests.test(msg="outputs and metrics"):
        data = json.loads((repo / "metrics/data.json").read_text())
        assert data["splits"]["train"]["total"] == 24 and data["splits"]["test"]["baseline_accuracy"] == 0.5
        for model in MODELS:
            trained = json.loads((repo / f"metrics/train/{model}.json").read_text())
            evaluated = json.loads((repo / f"metrics/eval/{model}.json").read_text())
            history = pd.read_csv(repo / f"metrics/history/{model}.csv")
            predictions = pd.read_csv(repo / f"metrics/predictions/{model}.csv")
            # What the fixture makes true: one epoch, 16 validation and 4 test photos; the
            # numbers are the history's last epoch and the predictions' share of right answers.
            assert len(history) == 1 and trained["val_accuracy"] == history["val_accuracy"].iloc[-1]
            assert (trained["val_accuracy"] * 16).is_integer()
            assert json.loads((repo / f"models/{model}/training.json").read_text())["epochs"] == 1
            assert evaluated["count"] == len(predictions) == 4
            assert evaluated["accuracy"] == (predictions["actual"] == predictions["predicted"]).mean()
            assert (repo / f"models/{model}/model.keras").is_file()
        # The synthetic classes are easy: the small CNN with input scaling (M3) must beat the coin.
        m3 = next(n for n, e in ZOO["models"].items() if e.get("rescale") == "mobilenet_v2")
        assert json.loads((repo / f"metrics/train/{m3}.json").read_text())["val_accuracy"] > 0.5

    with subtests.test(msg="MLflow runs"):
        # One run per model in the default store at the repo root, with test accuracy logged.
        runs = client.search_runs([client.get_experiment_by_name("catsdogs").experiment_id])
        by_name = {r.info.run_name: r for r in runs if r.info.status == "FINISHED"}
        interrupted = [r for r in runs if r.info.status != "FINISHED"]
        assert [(r.info.run_name, r.info.status) for r in interrupted] == [(M1, "KILLED")]
        assert ENDED_BY not in interrupted[0].data.tags  # ended by its own process, not found dead
        assert set(MODELS) <= set(by_name)
        for model in MODELS:
            assert "test_accuracy" in by_name[model].data.metrics
            tags = by_name[model].data.tags
            assert tags["dvc_stage"] in (f"train@{model}", f"finetune@{model}")
            assert tags["dvc_eval_stage"] in (f"evaluate@{model}", f"evaluate_finetune@{model}")

    with subtests.test(msg="machines"):
        # The machine every model trained on, gathered where the reports read it.
        machines = json.loads((repo / "metrics/machines.json").read_text())
        assert set(machines) == set(MODELS)
        assert {m["fingerprint"] for m in machines.values()} == {describe()["fingerprint"]}

    with subtests.test(msg="leaderboard and registry"):
        # The leaderboard ranks all five by validation accuracy; the registry knows the champion.
        board = pd.read_csv(repo / "metrics/leaderboard.csv")
        ranked = board["model"][: len(MODELS)]
        assert sorted(ranked) == sorted(MODELS) and board["model"].iloc[-1] == "majority_baseline"
        assert board["val_accuracy"][: len(MODELS)].is_monotonic_decreasing
        champion = client.get_model_version_by_alias("catsdogs", "champion")
        assert champion.run_id == by_name[board["model"][0]].info.run_id

    with subtests.test(msg="dvc plots show"):
        # dvc plots show: every model's curves overlaid, one chart per metric (losses on a log
        # scale), a confusion matrix per model, and every figure the stages drew.
        charts = json.loads(stdout(repo, "dvc", "plots", "show", "--json"))["data"]
        for chart in ("Validation accuracy", "Training accuracy", "Validation loss", "Training loss"):
            assert {row["model"] for row in charts[chart][0]["content"]["data"]["values"]} == set(MODELS)
        assert charts["Validation loss"][0]["content"]["encoding"]["y"]["scale"]["type"] == "log"
        assert {f"metrics/predictions/{m}.csv" for m in MODELS} <= set(charts)
        images = {name for name, shown in charts.items() if shown[0]["type"] == "image"}
        augmenting = next(n for n, e in ZOO["models"].items() if e.get("rotation"))
        assert {"plots/data/samples.png", f"plots/train/{M1}/curves.png",
                f"plots/train/{augmenting}/augment_rotation.png",
                f"plots/eval/{M1}/confusion_matrix.png", f"plots/eval/{M1}/predictions.png"} <= images

    with subtests.test(msg="dvc exp show"):
        # dvc exp show leads with each model's validation and test accuracy.
        header = stdout(repo, "dvc", "exp", "show", "--csv").splitlines()[0].split(",")
        first = header.index(f"{MODELS[0]}.val_accuracy")
        assert header[first : first + 2 * len(MODELS)] == [
            f"{m}.{k}" for m in MODELS for k in ("val_accuracy", "test_accuracy")]
        assert all(column in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")
                   for column in header[:first])

    with subtests.test(msg="cached repro"):
        # Everything cached: a second repro has nothing to do.
        second = sh(repo, "dvc", "repro")
        assert ran_stages(second) == set()
        assert "up to date" in sh(repo, "dvc", "status")

    with subtests.test(msg="one model's params"):
        # Changing one model's params re-runs that model's stages and nothing else.
        params = small_params(dataset_zip)
        params["models"][M1]["dropout"] = 0.3
        write_params(repo / "params.yaml", params)
        third = sh(repo, "dvc", "repro")
        assert ran_stages(third) == {f"train@{M1}", f"evaluate@{M1}", "compare"}

    with subtests.test(msg="DVC remote"):
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
        assert all((clone / f"models/{m}/model.keras").is_file() for m in MODELS)
        assert "up to date" in sh(clone, "dvc", "status")
        assert ran_stages(sh(clone, "dvc", "repro")) == set()

    with subtests.test(msg="queued experiments"):
        # Two queued experiments run side by side (`dvc queue start -j 2`, each in a copy under
        # .dvc/tmp/) and both land, complete, in the repository's own MLflow store. Their
        # compare stages rank them but register nothing: the champion stays where it was.
        registered = {v.version for v in client.search_model_versions("name='catsdogs'")}
        holder = client.get_model_version_by_alias("catsdogs", "champion").version
        # qb also sets a learning rate the way anyone first tries: 1e-5, which YAML 1.1 (and so
        # DVC's rewrite of params.yaml) leaves a string; the settings check takes the number.
        queued = (("qa", "0.35", []), ("qb", "0.45", ["-S", f"models.{M1}.learning_rate=1e-5"]))
        for name, dropout, more in queued:
            sh(repo, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"models.{M1}.dropout={dropout}",
               *more, f"train@{M1}", f"evaluate@{M1}", "compare")
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
        rates = {r.data.tags["dvc_experiment"]: float(r.data.params["model.learning_rate"]) for r in queued}
        assert rates == {"qa": ZOO["models"][M1]["learning_rate"], "qb": 1e-5}
        assert {v.version for v in client.search_model_versions("name='catsdogs'")} == registered
        assert client.get_model_version_by_alias("catsdogs", "champion").version == holder


@pytest.mark.slow
def test_a_model_needs_only_its_own_architectures_weights(tmp_path: Path, dataset_zip: Path) -> None:
    # Offline: the transfer models' ImageNet file cannot be fetched. M1 starts from random
    # weights, so its stages neither wait for it nor fail on it.
    params = small_params(dataset_zip)
    params["pretrained"]["transfer"] = {"url": "http://127.0.0.1:9/unreachable.h5", "sha256": None}
    repo = make_project(tmp_path / "project", params)
    arch = params["models"][M1]["arch"]
    output = sh(repo, "dvc", "repro", f"train@{M1}")
    assert ran_stages(output) == {f"pretrained@{arch}", "download", "split", f"train@{M1}"}
    assert (repo / f"models/{M1}/model.keras").is_file()
