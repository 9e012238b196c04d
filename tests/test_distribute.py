"""Training under tf.distribute: mirrored over two logical CPUs, and two workers on 127.0.0.1.

Each case runs in fresh processes: logical devices and multi-worker collectives must be set
up before TensorFlow does anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import PROJECT_ROOT, free_port, load_stage, small_params, write_params

MIRRORED = textwrap.dedent("""
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from catsdogs.core.params import load_params
    from catsdogs.data.manifest import read_manifest
    from catsdogs.training.strategy import choose_strategy
    from catsdogs.training.train import train_model
    from catsdogs.zoo.entries import training_job
    strategy = choose_strategy("mirrored")
    params = load_params(sys.argv[1])
    job = training_job(params, next(iter(params["models"])))
    _, result = train_model(job, read_manifest(sys.argv[2]), sys.argv[3], strategy=strategy)
    print("REPLICAS", strategy.num_replicas_in_sync, "EPOCHS", len(result.history),
          "LOSS", result.history["loss"].iloc[-1])
""")


@pytest.fixture()
def prepared(tmp_path: Path, dataset_zip: Path, monkeypatch) -> Path:
    """A project folder with the synthetic data downloaded and split."""
    project = tmp_path / "chief"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_params(project / "params.yaml", small_params(dataset_zip, epochs=2))
    for stage in ("download", "split"):
        assert CliRunner().invoke(load_stage(stage), [], catch_exceptions=False).exit_code == 0
    return project


def test_mirrored_over_two_logical_cpus(prepared: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, "params.yaml", "data/split/manifest.csv", "data/raw"],
        cwd=prepared, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert words[words.index("REPLICAS") + 1] == "2" and words[words.index("EPOCHS") + 1] == "2"
    assert float(words[words.index("LOSS") + 1]) > 0


@pytest.mark.slow
def test_two_workers_train_m1_to_the_end(prepared: Path, tmp_path: Path) -> None:
    worker = tmp_path / "worker"
    shutil.copytree(prepared, worker)
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    name = next(iter(yaml.safe_load((prepared / "params.yaml").read_text())["models"]))
    args = ["--model", name, "--out", f"models/{name}", "--metrics", f"metrics/train/{name}.json",
            "--history", f"metrics/history/{name}.csv", "--figures", f"plots/train/{name}"]
    # Each worker writes to a file, not a pipe: a pipe nobody reads yet (the second worker's,
    # while the test waits on the first) fills up and stalls that worker, and with it the
    # other one, which waits for it in every all-reduce.
    logs = [tmp_path / f"worker{index}.log" for index in range(2)]
    procs = []
    for index, cwd in enumerate((prepared, worker)):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                      "task": {"type": "worker", "index": index}})}
        with open(logs[index], "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "stages/train.py"), *args],
                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 400  # one deadline for both; a stuck pair is killed together
    finished = True
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        finished = False
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = [log.read_text() for log in logs]
    tails = "\n".join(f"--- worker {i}:\n{o[-2000:]}" for i, o in enumerate(outputs))
    assert finished, f"the two workers did not finish within 400 s:\n{tails}"
    assert [p.returncode for p in procs] == [0, 0], tails
    assert "CollectiveAllReduceStrategy over 2 replica(s)" in outputs[0]
    metrics = json.loads((prepared / f"metrics/train/{name}.json").read_text())
    history = pd.read_csv(prepared / f"metrics/history/{name}.csv")
    # Two epochs on the fixture's 16 validation photos: the last one's number, in sixteenths.
    assert history["epoch"].tolist() == [1, 2]
    assert metrics["val_accuracy"] == history["val_accuracy"].iloc[-1]
    assert (metrics["val_accuracy"] * 16).is_integer()
    assert json.loads((prepared / f"models/{name}/training.json").read_text())["epochs"] == 2
    assert (prepared / f"models/{name}/model.keras").is_file()
    assert "worker done" in outputs[1]
    # Each worker read only its half of every batch (of 24 training, 16 validation photos).
    for output in outputs:
        assert "this worker read 12 of the 24 training photos and 8 of the 16 validation" in output
    assert not (worker / "models").exists() and not (worker / "metrics/train").exists()
