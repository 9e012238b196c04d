"""A training that dies goes on from its last whole epoch and ends with the same model.

The stage runs for real in a subprocess, SIGKILLed mid-epoch, then again; its model must
equal, array by array, the one an uninterrupted run of the same code made on this machine.
The resume state's folder is checked on its own: digests, half-written states, the lock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import PROJECT_ROOT, another_kind_of_cpu, load_stage, small_params, write_params

from catsdogs.models.model_file import load_model_file
from catsdogs.training import resume
from catsdogs.training.resume import ResumeState, SavedState, claimed, training_digest

# -- the state's folder ---------------------------------------------------------------------


def state(epoch: int, value: float = 1.0) -> SavedState:
    history = pd.DataFrame({"epoch": range(1, epoch + 1), "loss": 0.5, "accuracy": 0.5,
                            "val_loss": 0.5, "val_accuracy": 0.5, "seconds": 1.0})
    return SavedState(epoch=epoch, model_variables=[np.full((2, 3), value, "float32"),
                                                    np.array([7, 9], "int64")],
                      optimizer_variables=[np.array(epoch * 4, "int64")], history=history,
                      run_id="run-a")


def test_the_last_saved_epoch_comes_back_as_saved(tmp_path: Path) -> None:
    store = ResumeState(tmp_path, "m", "d1")
    assert store.load() is None
    store.save(state(1, 1.0))
    store.save(state(2, 2.0))
    loaded = store.load()
    assert loaded.epoch == 2 and loaded.run_id == "run-a"
    assert [a.tolist() for a in loaded.model_variables] == [[[2.0] * 3] * 2, [7, 9]]
    assert loaded.model_variables[1].dtype == np.int64
    assert loaded.optimizer_variables[0].tolist() == 8
    assert loaded.history["epoch"].tolist() == [1, 2]
    # One state per model: the earlier epoch is gone.
    assert sorted(p.name for p in (tmp_path / "m/d1").iterdir()) == ["epoch-0002"]


def test_another_digest_is_never_read_and_saving_removes_it(tmp_path: Path) -> None:
    ResumeState(tmp_path, "m", "old").save(state(3))
    other = ResumeState(tmp_path, "m", "new")
    assert other.load() is None
    other.save(state(1))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["new"]
    ResumeState(tmp_path, "m", "new").clear()
    assert not (tmp_path / "m").exists()


def test_a_half_written_state_is_never_read(tmp_path: Path, caplog) -> None:
    store = ResumeState(tmp_path, "m", "d")
    store.save(state(2))
    # A kill mid-save leaves a temporary folder, or (written by hand) a folder without its
    # state.json: neither counts. A damaged archive is said and skipped.
    (tmp_path / "m/d/.epoch-0003.tmp-x").mkdir()
    (tmp_path / "m/d/epoch-0004").mkdir()
    assert store.load().epoch == 2
    (tmp_path / "m/d/epoch-0002/model.npz").write_bytes(b"")  # a power cut's empty file
    assert store.load() is None
    assert "cannot be read (EOFError" in caplog.text
    assert not (tmp_path / "m/d/epoch-0002").exists()  # removed: it cannot block a rerun


def test_a_held_state_is_neither_read_nor_written_by_another_process(tmp_path: Path) -> None:
    holder = ("import sys, time\nfrom pathlib import Path\nfrom catsdogs.training.resume import claimed\n"
              "with claimed(Path(sys.argv[1]), 'm', 'd'):\n    print('held', flush=True)\n"
              "    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        with claimed(tmp_path, "m", "d") as held:
            assert held is None
    finally:
        process.kill()
        process.wait()
    with claimed(tmp_path, "m", "d") as free:  # its holder is gone: the lock went with it
        assert isinstance(free, ResumeState)


def test_the_digest_covers_settings_files_code_and_machine(tmp_path: Path) -> None:
    photo, code = tmp_path / "photo.jpg", tmp_path / "training.py"
    photo.write_bytes(b"cat")
    code.write_text("x = 1\n")

    def digest(settings=None, fingerprint="abc") -> str:
        return training_digest(settings or {"epochs": 20}, [photo], [code], fingerprint)

    first = digest()
    assert digest() == first
    assert digest({"epochs": 21}) != first
    assert digest(fingerprint="abd") != first
    photo.write_bytes(b"dog")
    assert digest() != first
    photo.write_bytes(b"cat")
    code.write_text("x = 2\n")
    assert digest() != first


# -- a stage killed and run again ----------------------------------------------------------


def stage_args(name: str) -> list[str]:
    return ["--model", name, "--out", f"models/{name}", "--metrics", f"metrics/train/{name}.json",
            "--history", f"metrics/history/{name}.csv", "--figures", f"plots/train/{name}"]


@pytest.fixture()
def project(tmp_path: Path, dataset_zip: Path, tracking_store: str, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", small_params(dataset_zip))
    for stage in ("download", "split"):
        assert CliRunner().invoke(load_stage(stage), []).exit_code == 0
    return tmp_path


def train(project: Path, name: str, *extra: str, kill_at_epoch: int | None = None) -> str:
    """Run the train stage for `name`; with `kill_at_epoch`, SIGKILL it as that epoch starts
    (the epochs before it saved). Returns its output."""
    command = [sys.executable, str(PROJECT_ROOT / "stages/train.py"), *stage_args(name), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if kill_at_epoch and line.startswith(f"Epoch {kill_at_epoch}/"):
            process.send_signal(signal.SIGKILL)
            break
    output = "".join(seen) + process.communicate(timeout=300)[0]
    if kill_at_epoch:
        assert process.returncode == -signal.SIGKILL, output[-3000:]
    else:
        assert process.returncode == 0, output[-3000:]
    return output


def outcome(project: Path, name: str) -> tuple[list[np.ndarray], pd.DataFrame]:
    model = load_model_file(project / f"models/{name}")
    history = pd.read_csv(project / f"metrics/history/{name}.csv").drop(columns="seconds")
    # Weights only: a .keras file keeps no seed-generator state (a loaded one is seeded anew).
    return model.get_weights(), history


def killed_then_resumed_equals_uninterrupted(project: Path, name: str, *extra: str) -> None:
    train(project, name, *extra)
    uninterrupted = outcome(project, name)
    assert not (project / resume.RESUME_DIR / name).exists()  # done: no state left
    # As DVC does before it runs a stage: its outputs go first.
    shutil.rmtree(project / f"models/{name}")
    (project / f"metrics/history/{name}.csv").unlink()

    train(project, name, *extra, kill_at_epoch=3)
    [saved] = (project / resume.RESUME_DIR / name).glob("*/epoch-*")
    assert saved.name == "epoch-0002"
    killed = json.loads((saved / "state.json").read_text())["run_id"]
    output = train(project, name, *extra)
    assert "resuming after epoch 2 of 4" in output
    assert output.count("\nEpoch ") == 2  # only epochs 3 and 4 trained

    weights, history = outcome(project, name)
    assert len(weights) == len(uninterrupted[0])
    for resumed, whole in zip(weights, uninterrupted[0], strict=True):
        np.testing.assert_array_equal(resumed, whole)
    pd.testing.assert_frame_equal(history, uninterrupted[1])
    assert not (project / resume.RESUME_DIR / name).exists()

    # MLflow: the new run holds every epoch and names the dead one.
    runs = mlflow.search_runs(experiment_names=["catsdogs"], filter_string=f"run_name = '{name}'",
                              order_by=["start_time DESC"])
    latest = runs.iloc[0]
    assert latest["tags.catsdogs.resumed_from_run"] == killed
    assert latest["tags.catsdogs.resumed_after_epoch"] == "2"
    steps = mlflow.MlflowClient().get_metric_history(latest["run_id"], "val_accuracy")
    assert sorted(m.step for m in steps) == [1, 2, 3, 4]
    assert [m.value for m in sorted(steps, key=lambda m: m.step)] == pytest.approx(
        list(history["val_accuracy"]))
    assert set(runs["status"]) == {"FINISHED", "KILLED"}


def augmenting_model(params: dict) -> str:
    return next(name for name, entry in params["models"].items()
                if entry.get("rotation") and entry.get("dropout"))


@pytest.mark.slow
def test_a_killed_training_with_augmentation_and_dropout_resumes_to_the_same_model(
    project: Path, dataset_zip: Path
) -> None:
    params = small_params(dataset_zip, epochs=4)
    write_params(project / "params.yaml", params)
    killed_then_resumed_equals_uninterrupted(project, augmenting_model(params))


@pytest.mark.slow
def test_a_killed_fine_tuning_resumes_to_the_same_model(project: Path, dataset_zip: Path) -> None:
    params = small_params(dataset_zip)
    name, entry = next(iter(params["finetune"].items()))
    entry["epochs"] = 4
    write_params(project / "params.yaml", params)
    base = entry["init_from"]
    train(project, base)
    killed_then_resumed_equals_uninterrupted(project, name, "--init-from", f"models/{base}")


@pytest.mark.slow
def test_resume_off_keeps_no_state(project: Path, dataset_zip: Path) -> None:
    params = small_params(dataset_zip, epochs=3)
    params["train"]["resume"] = False
    write_params(project / "params.yaml", params)
    name = augmenting_model(params)
    train(project, name, kill_at_epoch=3)
    assert not (project / resume.RESUME_DIR / name).exists()
    assert "resuming" not in train(project, name)


@pytest.mark.slow
@pytest.mark.parametrize("change", ["params", "machine"])
def test_a_state_made_under_other_params_or_on_another_machine_is_not_used(
    project: Path, dataset_zip: Path, monkeypatch, change: str
) -> None:
    params = small_params(dataset_zip, epochs=4)
    write_params(project / "params.yaml", params)
    name = augmenting_model(params)
    train(project, name, kill_at_epoch=3)
    [before] = (project / resume.RESUME_DIR / name).iterdir()
    if change == "params":
        params["models"][name]["dropout"] = 0.4
        write_params(project / "params.yaml", params)
    else:  # oneDNN held to less computes as another kind of CPU does: another fingerprint
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", another_kind_of_cpu()[0])
    output = train(project, name, kill_at_epoch=2)
    assert "resuming" not in output  # trained from epoch 1
    [after] = (project / resume.RESUME_DIR / name).iterdir()
    assert after.name != before.name  # its own digest; the other state was removed
    assert [p.name for p in after.iterdir()] == ["epoch-0001"]


# -- fit() with a resume, in process ------------------------------------------------------


def tiny_fit(epochs: int, resume_with=None):
    import keras
    import tensorflow as tf

    from catsdogs.training.fit import fit
    from catsdogs.training.objective import compile_model
    from catsdogs.training.strategy import set_determinism

    set_determinism(3)
    model = compile_model(keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.3),
                                            keras.layers.Dense(1)]))
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), dtype=np.float32), (rng.random((32, 1)) > 0.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(32, seed=3).batch(8)
    return model, fit(model, data, data, epochs=epochs, train_images=32, resume=resume_with)


def test_a_state_that_cannot_be_saved_does_not_stop_the_training(caplog) -> None:
    from catsdogs.training.fit import Resume

    def full_disk(state: SavedState) -> None:
        raise OSError(28, "No space left on device")

    _, result = tiny_fit(3, Resume(None, full_disk))
    assert result.history["epoch"].tolist() == [1, 2, 3]
    assert caplog.text.count("cannot save the resume state after epoch 1") == 1


def test_a_state_saved_after_the_last_epoch_trains_nothing_more(tmp_path: Path) -> None:
    from catsdogs.training.fit import Resume

    saves: list[SavedState] = []
    whole_model, whole = tiny_fit(2, Resume(None, saves.append))
    assert [s.epoch for s in saves] == [1, 2]
    model, again = tiny_fit(2, Resume(saves[-1], saves.append))
    assert len(saves) == 2  # no epoch trained, none saved
    pd.testing.assert_frame_equal(again.history, whole.history)
    assert again.history["val_accuracy"].dtype == np.float64
    for mine, theirs in zip(model.get_weights(), whole_model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert again.seconds >= whole.history["seconds"].sum()
