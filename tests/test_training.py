"""Training: reproducible to the last digit, and reading splits only from the manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_SIZE, tiny_params, transfer_entry

from catsdogs.core.params import ConfigError
from catsdogs.data.input_pipeline import image_dataset
from catsdogs.data.manifest import split_rows
from catsdogs.data.split import build_manifest
from catsdogs.training.strategy import choose_strategy
from catsdogs.training.train import train_model
from catsdogs.zoo.entries import training_job


def augmenting_model(params: dict) -> str:
    """A zoo entry with augmentation: its random ops must repeat too."""
    return next(n for n, e in params["models"].items() if e.get("rotation"))


def run_once(extracted: Path, manifest: pd.DataFrame, seed: int) -> pd.DataFrame:
    params = tiny_params(epochs=2)
    params["seed"] = seed
    _, result = train_model(training_job(params, augmenting_model(params)), manifest, extracted)
    return result.history.drop(columns="seconds")


def test_same_seed_gives_identical_history(extracted: Path) -> None:
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    first = run_once(extracted, manifest, seed=7)
    second = run_once(extracted, manifest, seed=7)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    other = run_once(extracted, manifest, seed=8)
    assert not first.equals(other)


def test_epoch_hooks_see_every_epoch(extracted: Path) -> None:
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    params = tiny_params(epochs=2)
    seen = []
    _, result = train_model(training_job(params, next(iter(params["models"]))), manifest, extracted,
                            epoch_hooks=[lambda epoch, logs: seen.append((epoch, sorted(logs)))])
    assert seen == [(e, ["accuracy", "loss", "val_accuracy", "val_loss"]) for e in (1, 2)]
    assert result.metrics()["best_epoch"] in (1, 2)
    timings = result.timings()
    assert timings["epochs"] == 2
    assert timings["images_per_second"] == pytest.approx(24 / result.history["seconds"].iloc[1], rel=0.01)


def test_frozen_base_validation_matches_a_full_evaluation(extracted: Path, vivid_zoo: str) -> None:
    # M4 validates on base outputs computed once; the figures must be the full model's.
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    params = tiny_params(epochs=2)
    params["seed"] = 3
    _, entry = transfer_entry(params)
    params["models"]["vivid"] = {"arch": vivid_zoo, **{k: entry[k] for k in ("pooling", "dropout",
                                                                                "flip", "rotation")}}
    params["pretrained"][vivid_zoo] = "none"
    seen = []
    model, result = train_model(training_job(params, "vivid"), manifest, extracted,
                                epoch_hooks=[lambda epoch, logs: seen.append(logs)])
    assert [sorted(logs) for logs in seen] == [["accuracy", "loss", "val_accuracy", "val_loss"]] * 2
    validation = image_dataset(split_rows(manifest, "validation"), extracted, image_size=TINY_SIZE,
                               batch_size=8, shuffle=False, seed=3)
    full = model.evaluate(validation, verbose=0, return_dict=True)
    last = result.history.iloc[-1]
    assert last["val_loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert last["val_accuracy"] == pytest.approx(full["accuracy"], abs=1e-9)
    assert seen[-1]["val_loss"] == pytest.approx(full["loss"], rel=1e-5)


def test_a_model_trains_at_its_own_image_size(extracted: Path) -> None:
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    params = tiny_params()
    name = next(iter(params["models"]))
    params["models"][name]["image_size"] = 40
    model, _ = train_model(training_job(params, name), manifest, extracted)
    assert model.input_shape == (None, 40, 40, 3)


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'tpu'; choose from: auto, default"):
        choose_strategy("tpu")


def _signalling_fit(signals_at: list[int], batches: int = 12) -> int:
    """Fit a tiny model under the Ctrl-C stopper, sending this process one SIGINT per
    entry of `signals_at` as that batch begins; return how many batches ran to their end."""
    import os
    import signal

    import keras
    import numpy as np

    from catsdogs.training.callbacks import InterruptsThatStick

    ended = []

    class Recorder(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            ended.append(batch)

    class Signaller(keras.callbacks.Callback):  # after the stopper's own checks
        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            for _ in range(signals_at.count(len(ended))):
                os.kill(os.getpid(), signal.SIGINT)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((batches, 2), "float32")
    stopper = InterruptsThatStick()
    with pytest.raises(KeyboardInterrupt), stopper.installed():
        model.fit(x, x[:, :1], batch_size=1, epochs=5, verbose=0,
                  callbacks=[Recorder(), stopper, Signaller()])
    return len(ended)


def test_ctrl_c_in_fit_lets_the_batch_it_came_in_end_and_starts_no_other() -> None:
    assert _signalling_fit([3]) == 4


def test_a_second_ctrl_c_stops_fit_at_once() -> None:
    assert _signalling_fit([3, 3]) == 3


def test_no_ctrl_c_no_stop() -> None:
    with pytest.raises(pytest.fail.Exception):  # fit runs to its end: nothing raised
        _signalling_fit([])
