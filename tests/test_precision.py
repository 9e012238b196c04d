"""Mixed precision: each policy trains, saved models predict in float32, the hardware is asked."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import tiny_params

from catsdogs.data.split import build_manifest
from catsdogs.models.architectures import FLOAT32_LAYERS, LOGIT_LAYER, PREPROCESSING_LAYERS
from catsdogs.training import train as training
from catsdogs.training.precision import all_layers, hardware_note, native, with_precision
from catsdogs.training.train import train_model
from catsdogs.zoo.entries import training_job

AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
NO_BF16 = frozenset({"avx2", "fma"})


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_each_policy_trains_and_the_saved_model_predicts_in_float32(
    precision: str, extracted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    params = tiny_params()
    name = next(iter(params["models"]))
    params["models"][name]["precision"] = precision
    policies: set[str] = set()
    loss_scaled: list[bool] = []
    compile_model = training.compile_model

    def spy(model: keras.Model, optimizer=None) -> keras.Model:  # the model as it trains
        policies.update(layer.dtype_policy.name for layer in model.layers[1:])
        compiled = compile_model(model, optimizer)
        loss_scaled.append(isinstance(compiled.optimizer, keras.optimizers.LossScaleOptimizer))
        return compiled

    monkeypatch.setattr(training, "compile_model", spy)
    model, result = train_model(training_job(params, name), manifest, extracted)
    assert np.isfinite(result.history["loss"]).all()
    assert policies == {precision, "float32"}  # the logit stays float32
    # float16's narrow range needs loss scaling; bfloat16 has float32's range and none.
    assert loss_scaled == [precision == "mixed_float16"]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    output = loaded.predict(images, verbose=0)
    assert output.dtype == np.float32 and output.shape == (2, 1)


def test_conversion_keeps_the_weights_and_the_float32_logit() -> None:
    params = tiny_params()
    name = next(n for n, e in params["models"].items() if e["arch"] == "transfer")
    model = training_job(params, name).model.build((32, 32, 3))
    mixed = with_precision(model, "mixed_bfloat16")
    assert mixed.get_layer("logit").dtype_policy.name == "float32"
    assert mixed.get_layer("base").layers[5].dtype_policy.name == "mixed_bfloat16"
    assert not mixed.get_layer("base").trainable  # trainable flags survive the rebuild
    back = with_precision(mixed, "float32")
    for a, b in zip(model.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert with_precision(model, "float32") is model  # nothing to change: the same model


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_under_a_mixed_policy_only_what_follows_the_preprocessing_computes_in_it(
        precision: str) -> None:
    # Every zoo entry: the rescaling and augmentation in front of the first convolution,
    # and the logit, compute in float32; every other layer in the policy's dtype.
    params = tiny_params()
    half = precision.removeprefix("mixed_")
    for name, entry in params["models"].items():
        model = with_precision(training_job(params, name).model.build((32, 32, 3)), precision)
        dtypes = {layer.name: layer.compute_dtype for layer in all_layers(model)
                  if not isinstance(layer, (keras.layers.InputLayer, keras.Model))}
        front = [n for n in dtypes if n in PREPROCESSING_LAYERS]
        assert {dtypes[n] for n in [*front, LOGIT_LAYER]} == {"float32"}, name
        rest = {n: d for n, d in dtypes.items() if n not in FLOAT32_LAYERS}
        assert rest and set(rest.values()) == {half}, (name, rest)
        expected_front = (
            ({"rescale"} if entry.get("rescale") == "mobilenet_v2" or entry["arch"] == "transfer"
             else set())
            | ({"random_flip"} if entry.get("flip", "none") != "none" else set())
            | ({"random_rotation"} if entry.get("rotation") else set()))
        assert set(front) == expected_front, name
        images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        assert model(images, training=True).dtype == "float32"


def test_native_bfloat16_needs_avx512_bf16_amx_or_an_ampere_gpu() -> None:
    assert native("mixed_bfloat16", flags=AVX512_BF16, gpus=[])
    assert native("mixed_bfloat16", flags=frozenset({"amx_bf16"}), gpus=[])
    assert not native("mixed_bfloat16", flags=NO_BF16, gpus=[(7, 5)])
    assert native("mixed_bfloat16", flags=NO_BF16, gpus=[(8, 0)])
    assert not native("mixed_float16", flags=AVX512_BF16, gpus=[])
    assert native("mixed_float16", flags=NO_BF16, gpus=[(7, 0)])


def test_notes_name_the_setting_to_change() -> None:
    kind, text = hardware_note("mixed_bfloat16", "models.m1_cnn.precision", flags=NO_BF16, gpus=[])
    assert kind == "warning" and "slower than float32" in text
    assert "set models.m1_cnn.precision: float32" in text
    kind, text = hardware_note("float32", "train.precision", flags=AVX512_BF16, gpus=[])
    assert kind == "hint" and "train.precision: mixed_bfloat16" in text and "x faster" in text
    assert hardware_note("float32", "train.precision", flags=NO_BF16, gpus=[]) is None
    assert hardware_note("mixed_bfloat16", "train.precision", flags=AVX512_BF16, gpus=[]) is None


def test_training_warns_once_when_the_cpu_has_no_bfloat16(
    extracted: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(training, "cpu_flags", lambda: NO_BF16)  # simulate an older CPU
    monkeypatch.setattr(training, "gpu_capabilities", list)
    manifest = build_manifest(extracted, test_every=5, strict=False).manifest
    params = tiny_params()
    params["train"]["precision"] = "mixed_bfloat16"
    with caplog.at_level(logging.INFO, logger="catsdogs.training.train"):
        train_model(training_job(params, next(iter(params["models"]))), manifest, extracted)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "train.precision: mixed_bfloat16 is not native" in warnings[0].message
