"""Training: reproducible to the last digit, and reading splits only from the manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import vivid_transfer

from catsdogs.config import load_params
from catsdogs.data import image_dataset, split_rows
from catsdogs.models import model_spec
from catsdogs.split import build_manifest
from catsdogs.training import TrainConfig, choose_strategy, train

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")


def run_once(extracted: Path, manifest: pd.DataFrame, seed: int) -> pd.DataFrame:
    spec = model_spec(PARAMS["models"], "m2_augment")  # augmentation: random ops must repeat too
    config = TrainConfig(image_size=32, batch_size=8, epochs=2)
    _, result = train(lambda: spec.build((32, 32, 3)), spec.training, manifest, extracted,
                      config, seed=seed)
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
    spec = model_spec(PARAMS["models"], "m1_cnn")
    seen = []
    _, result = train(lambda: spec.build((32, 32, 3)), spec.training, manifest, extracted,
                      TrainConfig(image_size=32, batch_size=8, epochs=2), seed=1,
                      epoch_hooks=[lambda epoch, logs: seen.append((epoch, sorted(logs)))])
    assert seen == [(e, ["accuracy", "loss", "val_accuracy", "val_loss"]) for e in (1, 2)]
    summary = result.summary()
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert summary["images_per_second"] == pytest.approx(24 / result.history["seconds"].iloc[1], rel=0.01)


def test_frozen_base_validation_matches_a_full_evaluation(extracted: Path) -> None:
    # M4 validates on base outputs computed once; the figures must be the full model's.
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    spec = model_spec({"m4_transfer": dict(PARAMS["models"]["m4_transfer"], weights="none")}, "m4_transfer")
    config = TrainConfig(image_size=32, batch_size=8, epochs=2)
    seen = []
    model, result = train(lambda: vivid_transfer(PARAMS["models"]["m4_transfer"]), spec.training,
                          manifest, extracted,
                          config, seed=3, epoch_hooks=[lambda epoch, logs: seen.append(logs)])
    assert [sorted(logs) for logs in seen] == [["accuracy", "loss", "val_accuracy", "val_loss"]] * 2
    validation = image_dataset(split_rows(manifest, "validation"), extracted, image_size=32,
                               batch_size=8, shuffle=False, seed=3)
    full = model.evaluate(validation, verbose=0, return_dict=True)
    last = result.history.iloc[-1]
    assert last["val_loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert last["val_accuracy"] == pytest.approx(full["accuracy"], abs=1e-9)
    assert seen[-1]["val_loss"] == pytest.approx(full["loss"], rel=1e-5)


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; choose from: auto, default"):
        choose_strategy("tpu")
