"""The model zoo: parameter counts, every entry trains a step, settings are checked."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import project_params, tiny_params, transfer_entry, vivid_transfer

from catsdogs.core.params import ConfigError
from catsdogs.models.architectures import BASE_LAYER, count_params, unfreeze_top
from catsdogs.models.model_file import with_probability
from catsdogs.training.frozen_features import split_frozen_features
from catsdogs.training.objective import compile_model
from catsdogs.zoo.entries import finetune_spec, model_spec, training_job

PARAMS = tiny_params()
ZOO = PARAMS["models"]
# The post's parameter counts at 160 px: the small CNN (M1-M3), and MobileNetV2 with the
# 128-unit head (M4), of which only the head trains.
CNN_PARAMS = 1_346_753
TRANSFER_PARAMS = (2_422_081, 164_097)


def test_zoo_parameter_counts_at_160_px() -> None:
    for name, entry in ZOO.items():
        model = model_spec(ZOO, name).build((160, 160, 3))
        if entry["arch"] == "cnn" and entry.get("dense_units", 128) == 128:
            assert count_params(model) == {"total": CNN_PARAMS, "trainable": CNN_PARAMS}, name
        elif entry["arch"] == "transfer" and entry.get("dense_units", 128) == 128:
            total, trainable = TRANSFER_PARAMS
            assert count_params(model) == {"total": total, "trainable": trainable}, name


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_fits_a_step(name: str) -> None:
    job = training_job(PARAMS, name)
    model = compile_model(job.model.build(job.input_shape), job.optimizer)
    images = np.random.default_rng(0).uniform(0, 255, (4, *job.input_shape)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(images, np.array([[0.0], [1.0], [0.0], [1.0]]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.output_shape == (None, 1)


def test_preprocessing_is_inside_the_saved_model(tmp_path: Path) -> None:
    name = next(n for n, e in ZOO.items() if e.get("rescale") == "mobilenet_v2")  # M3
    model = model_spec(ZOO, name).build((32, 32, 3))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [layer.name for layer in loaded.layers[1:4]] == ["rescale", "random_flip", "random_rotation"]
    raw = np.full((1, 32, 32, 3), 200.0, dtype="float32")
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), model.predict(raw, verbose=0), rtol=1e-5)
    probability = with_probability(loaded).predict(raw, verbose=0)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-model.predict(raw, verbose=0))), rtol=1e-5)


def test_finetune_unfreezes_the_base_from_a_layer_on() -> None:
    name, _ = transfer_entry(PARAMS)
    model = model_spec(ZOO, name).build((32, 32, 3))
    base = unfreeze_top(model, 100).get_layer(BASE_LAYER)
    assert not any(layer.trainable for layer in base.layers[:100])
    top = base.layers[100:]
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    # The tutorial's phase 2 trains 2,025,537, of which 21,824 are BatchNorm scales and offsets.
    assert count_params(model)["trainable"] == 2_003_713


def test_finetuning_keeps_the_base_batchnorm_statistics() -> None:
    name, entry = transfer_entry(PARAMS)
    job = training_job(PARAMS, name)
    model = compile_model(unfreeze_top(vivid_transfer(entry), 100), job.optimizer)
    base = model.get_layer(BASE_LAYER)
    conv = next(layer for layer in base.layers[100:] if isinstance(layer, keras.layers.Conv2D))
    norms = [layer for layer in base.layers[100:] if isinstance(layer, keras.layers.BatchNormalization)]
    moving_before = [norm.moving_mean.numpy().copy() for norm in norms]
    kernel_before = conv.kernel.numpy().copy()
    images = np.random.default_rng(0).uniform(0, 255, (8, *model.input_shape[1:])).astype("float32")
    model.fit(images, np.array([[0.0], [1.0]] * 4), epochs=1, verbose=0)
    # The unfrozen convolutions learn; the ImageNet statistics they were trained with stay.
    assert not np.array_equal(conv.kernel.numpy(), kernel_before)
    for norm, before in zip(norms, moving_before, strict=True):
        np.testing.assert_array_equal(norm.moving_mean.numpy(), before, err_msg=norm.name)


def test_every_finetune_entry_continues_a_transfer_model() -> None:
    for name in PARAMS["finetune"]:
        spec = finetune_spec(PARAMS["finetune"], name)
        assert ZOO[spec.init_from]["arch"] == "transfer"
        job = training_job(PARAMS, name)
        assert job.config.image_size == training_job(PARAMS, spec.init_from).config.image_size


def test_finetuning_a_model_without_a_base_is_a_clear_error() -> None:
    cnn = model_spec(ZOO, next(n for n, e in ZOO.items() if e["arch"] == "cnn")).build((32, 32, 3))
    with pytest.raises(ConfigError, match=r"no pretrained 'base' network to fine-tune; "
                       "'finetune.m9.init_from' must name a transfer model"):
        unfreeze_top(cnn, 10, where="finetune.m9")
    _, entry = transfer_entry(PARAMS)
    transfer = model_spec({"t": entry}, "t").build((32, 32, 3))
    with pytest.raises(ConfigError, match=r"'finetune.m9.fine_tune_at' must be in \[0, 154\)"):
        unfreeze_top(transfer, 500, where="finetune.m9")


def test_frozen_features_split_only_where_the_base_is_frozen() -> None:
    _, entry = transfer_entry(PARAMS)
    transfer = vivid_transfer(entry)
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
    cnn = next(n for n, e in ZOO.items() if e["arch"] == "cnn")
    assert split_frozen_features(model_spec(ZOO, cnn).build((32, 32, 3))) is None


def test_unknown_model_lists_the_zoo() -> None:
    first, second = list(ZOO)[:2]
    with pytest.raises(ConfigError, match=f"unknown model 'm9'; choose from: {first}, {second}"):
        model_spec(ZOO, "m9")
    # A job may be any entry, so its message lists the fine-tuned models too.
    params = project_params()
    with pytest.raises(ConfigError, match="unknown model 'm9'; choose from: .*, " + ", ".join(
            params["finetune"]) + "$"):
        training_job(params, "m9")


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown architecture 'resnet'.*choose from: cnn, transfer"):
        model_spec({"x": {"arch": "resnet"}}, "x")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"dropout": "high"}, "'models.x.dropout' must be float, got 'high'"),
        ({"filters": 3.5}, "'models.x.filters' must be int"),
        ({"flip": "sideways"}, "'models.x.flip' must be"),
        ({"colour": 1}, "unknown setting 'models.x.colour'; valid settings: blocks, dense_units"),
        ({"learning_rate": "fast"}, "'models.x.learning_rate' must be float"),
        ({"optimizer": "adagrad"},
         "'models.x.optimizer' must be one of 'adam', 'rmsprop', 'sgd', got 'adagrad'"),
        ({"dropout": 1.5}, "setting 'models.x.dropout' must be in [0, 1), got 1.5"),
        ({"dropout": 1}, "setting 'models.x.dropout' must be in [0, 1), got 1"),
        ({"rotation": -0.1}, "setting 'models.x.rotation' must be in [0, 1], got -0.1"),
        ({"filters": 0}, "setting 'models.x.filters' must be at least 1, got 0"),
        ({"dense_units": -8}, "setting 'models.x.dense_units' must be at least 1, got -8"),
        ({"learning_rate": 0}, "setting 'models.x.learning_rate' must be above 0, got 0"),
        ({"epochs": 0}, "setting 'models.x.epochs' must be at least 1, got 0"),
        ({"image_size": "big"}, "setting 'models.x.image_size' must be int, got 'big'"),
        ({"precision": "float8"}, "setting 'models.x.precision' must be"),
    ],
)
def test_bad_settings_name_the_key(setting: dict, message: str) -> None:
    escaped = message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")
    escaped = escaped.replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ConfigError, match=escaped):
        model_spec({"x": {"arch": "cnn", **setting}}, "x")


@pytest.mark.parametrize(("written", "number"), [("1e-5", 1e-5), ("1e-05", 1e-5), ("3E-4", 3e-4),
                                                 ("+3e-4", 3e-4), (" 1e-5 ", 1e-5)])
def test_scientific_notation_that_yaml_leaves_a_string_is_a_float(written: str, number: float) -> None:
    # PyYAML (YAML 1.1) reads 1e-5 without a dot as a string; a float setting takes it.
    assert yaml.safe_load(f"rate: {written.strip()}")["rate"] == written.strip()
    spec = model_spec({"x": {"arch": "cnn", "learning_rate": written}}, "x")
    assert spec.optimizer.learning_rate == number
    # Only where a float is meant: an int setting, or a word, still fails by name.
    with pytest.raises(ConfigError, match=r"'models\.x\.filters' must be int, got '1e-5'"):
        model_spec({"x": {"arch": "cnn", "filters": "1e-5"}}, "x")
    with pytest.raises(ConfigError, match=r"'models\.x\.learning_rate' must be above 0, got -1e-05"):
        model_spec({"x": {"arch": "cnn", "learning_rate": "-1e-5"}}, "x")


def test_an_entry_overrides_train_settings_for_itself() -> None:
    params = tiny_params()
    name = next(iter(params["models"]))
    params["models"][name].update({"image_size": 64, "epochs": 3, "precision": "mixed_bfloat16"})
    job = training_job(params, name)
    assert (job.config.image_size, job.config.epochs, job.config.precision) == (64, 3, "mixed_bfloat16")
    assert job.config.batch_size == params["train"]["batch_size"]
    assert job.setting("image_size") == f"models.{name}.image_size"
    assert job.setting("batch_size") == "train.batch_size"
    other = list(params["models"])[1]
    assert training_job(params, other).config.image_size == params["train"]["image_size"]


def test_train_section_is_checked_with_key_names() -> None:
    params = tiny_params()
    params["train"]["strategy"] = "tpu"
    with pytest.raises(ConfigError, match=r"setting 'train.strategy' must be"):
        training_job(params, next(iter(params["models"])))
    params = tiny_params()
    params["seed"] = "lucky"
    with pytest.raises(ConfigError, match="setting 'seed' must be int, got 'lucky'"):
        training_job(params, next(iter(params["models"])))


def test_missing_weights_file_fails_before_building(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    params = tiny_params()
    name, entry = transfer_entry(params)
    entry["weights"] = str(missing)
    model_spec({name: entry}, name)  # reading params needs no file
    expected = f"weights file '{missing}' does not exist; run `dvc repro pretrained`"
    with pytest.raises(ConfigError, match=expected):
        training_job(params, name)


def test_the_committed_zoo_parses() -> None:
    params = project_params()
    for name, entry in params["models"].items():
        assert model_spec(params["models"], name).arch == entry["arch"]
    # Training also needs the weights files the pretrained stage fetches: not here.
    for entry in params["models"].values():
        if "weights" in entry:
            entry["weights"] = "none"
    for name in [*params["models"], *params["finetune"]]:
        assert training_job(params, name).name == name


def test_params_digest_needs_no_weights_file_and_ignores_what_changes_no_number(tmp_path) -> None:
    import copy

    import yaml
    from conftest import PROJECT_ROOT

    from catsdogs.zoo.entries import params_digest

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    transfer = next(n for n, e in params["models"].items() if "weights" in e)
    # The weights file the entry names is absent (as after `dvc pull models metrics`).
    params["models"][transfer]["weights"] = str(tmp_path / "absent.h5")
    digest = params_digest(params, transfer)
    for key, value in (("memory_budget_mb", 1), ("cache_dir", "elsewhere"), ("resume", False)):
        changed = copy.deepcopy(params)
        changed["train"][key] = value
        assert params_digest(changed, transfer) == digest, key
    changed = copy.deepcopy(params)
    changed["train"]["batch_size"] = 16
    assert params_digest(changed, transfer) != digest
