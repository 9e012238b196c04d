"""The model zoo: parameter counts, every entry trains a step, settings are checked."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import vivid_transfer

from catsdogs.config import ConfigError, load_params
from catsdogs.models import (
    compile_model, count_params, finetune_spec, model_spec, split_frozen_features, unfreeze_top,
    with_probability,
)

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
ZOO = PARAMS["models"]


def offline(name: str) -> dict:
    """A zoo entry with random transfer weights: no download in tests."""
    entry = dict(ZOO[name])
    if entry["arch"] == "transfer":
        entry["weights"] = "none"
    return {name: entry}


@pytest.mark.parametrize(
    ("name", "total", "trainable"),
    [
        ("m1_cnn", 1_346_753, 1_346_753),
        ("m2_augment", 1_346_753, 1_346_753),
        ("m3_preprocess", 1_346_753, 1_346_753),
        ("m4_transfer", 2_422_081, 164_097),
    ],
)
def test_zoo_parameter_counts_at_160_px(name: str, total: int, trainable: int) -> None:
    model = model_spec(offline(name), name).build((160, 160, 3))
    assert count_params(model) == {"total": total, "trainable": trainable}


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_fits_a_step_at_32_px(name: str) -> None:
    spec = model_spec(offline(name), name)
    model = compile_model(spec.build((32, 32, 3)), spec.training)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(images, np.array([[0.0], [1.0], [0.0], [1.0]]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.output_shape == (None, 1)


def test_preprocessing_is_inside_the_saved_model(tmp_path: Path) -> None:
    spec = model_spec(offline("m3_preprocess"), "m3_preprocess")
    model = spec.build((32, 32, 3))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [layer.name for layer in loaded.layers[1:4]] == ["rescale", "random_flip", "random_rotation"]
    raw = np.full((1, 32, 32, 3), 200.0, dtype="float32")
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), model.predict(raw, verbose=0), rtol=1e-5)
    probability = with_probability(loaded).predict(raw, verbose=0)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-model.predict(raw, verbose=0))), rtol=1e-5)


def test_finetune_unfreezes_the_base_from_layer_100() -> None:
    model = model_spec(offline("m4_transfer"), "m4_transfer").build((32, 32, 3))
    spec = finetune_spec(PARAMS["finetune"], "m5_finetune")
    assert (spec.init_from, spec.fine_tune_at, spec.training.learning_rate) == ("m4_transfer", 100, 1e-5)
    base = unfreeze_top(model, spec.fine_tune_at).get_layer("mobilenet_v2_base")
    assert not any(layer.trainable for layer in base.layers[:100])
    assert base.layers[100].trainable and base.layers[-1].trainable
    assert count_params(model)["trainable"] == 2_025_537


def test_frozen_features_split_only_where_the_base_is_frozen() -> None:
    transfer = vivid_transfer(ZOO["m4_transfer"])
    features, head = split_frozen_features(transfer)
    # The head is the trainable part, whole: pooling's output in, the logit out.
    assert [w.path for w in head.trainable_weights] == [w.path for w in transfer.trainable_weights]
    assert features.output.shape[1:] == (1280,)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    values = features(images, training=False)
    assert float(np.std(values)) > 0.5  # features that tell images apart
    np.testing.assert_array_equal(head(values, training=False), transfer(images, training=False))
    # A partly unfrozen base (M5) and the CNNs train from their first layers on: no split.
    assert split_frozen_features(unfreeze_top(transfer, 100)) is None
    assert split_frozen_features(model_spec(ZOO, "m3_preprocess").build((32, 32, 3))) is None


def test_unknown_model_lists_the_zoo() -> None:
    with pytest.raises(ConfigError, match="unknown model 'm9'; choose from: m1_cnn, m2_augment"):
        model_spec(ZOO, "m9")


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'resnet'.*choose from: cnn, transfer"):
        model_spec({"x": {"arch": "resnet"}}, "x")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"dropout": "high"}, "'models.x.dropout' must be float, got 'high'"),
        ({"filters": 3.5}, "'models.x.filters' must be int"),
        ({"flip": "sideways"}, "'models.x.flip' must be"),
        ({"colour": 1}, "unknown setting 'models.x.colour'; valid settings: blocks, dense_units"),
        ({"learning_rate": "fast"}, "'models.x.learning_rate' must be float"),
        ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; choose from: adam, rmsprop, sgd"),
    ],
)
def test_bad_settings_name_the_key(setting: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        model_spec({"x": {"arch": "cnn", **setting}}, "x")


def test_missing_weights_file_fails_before_building(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(ConfigError, match=f"weights file '{missing}' does not exist"):
        model_spec({"m4": {"arch": "transfer", "weights": str(missing)}}, "m4")
