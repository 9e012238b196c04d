"""The model zoo: pure builders registered by architecture name, and how to compile them.

Each builder is `build_x(input_shape, **settings) -> keras.Model`, with its settings as
typed keyword-only parameters: params.yaml is checked against those signatures. Rescaling
and augmentation are layers inside the model, so a saved model takes raw RGB images in
[0, 255] and carries its own preprocessing. Every model outputs one logit (dog vs cat).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
from keras import layers

from catsdogs.config import ConfigError, check_settings, from_mapping, keyword_hints

log = logging.getLogger(__name__)

Flip = Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
Rescale = Literal["none", "mobilenet_v2"]
BASE_NAME = "mobilenet_v2_base"
# The Keras file inside a trained model folder (models/<name>/, written by the train stage).
MODEL_FILE = "model.keras"
PROBABILITY_LAYER = "probability_dog"


def _preprocessing(inputs: Any, *, flip: Flip, rotation: float, rescale: Rescale) -> Any:
    x = inputs
    if rescale == "mobilenet_v2":
        # MobileNetV2's preprocess_input: [0, 255] -> [-1, 1].
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    if flip != "none":
        x = layers.RandomFlip(flip, name="random_flip")(x)
    if rotation:
        x = layers.RandomRotation(rotation, name="random_rotation")(x)
    return x


def build_cnn(
    input_shape: tuple[int, int, int],
    *,
    filters: int = 32,
    blocks: int = 3,
    kernel_size: int = 3,
    dense_units: int = 128,
    dropout: float = 0.2,
    flip: Flip = "none",
    rotation: float = 0.0,
    rescale: Rescale = "none",
) -> keras.Model:
    """The post's small CNN (M1), optionally with augmentation (M2) and rescaling (M3).

    blocks x (Conv2D relu + MaxPooling2D), Flatten, Dense relu, Dropout, Dense(1) logit.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = _preprocessing(inputs, flip=flip, rotation=rotation, rescale=rescale)
    for _ in range(blocks):
        x = layers.Conv2D(filters, kernel_size, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_transfer(
    input_shape: tuple[int, int, int],
    *,
    weights: str = "imagenet",
    pooling: Literal["max", "avg"] = "max",
    dense_units: int = 128,
    dropout: float = 0.2,
    flip: Flip = "none",
    rotation: float = 0.0,
) -> keras.Model:
    """Transfer learning (M4): rescaling, augmentation, a frozen MobileNetV2 base, a new head.

    `weights` is "imagenet" (Keras downloads them), "none" (random), or a weights file path.
    The base runs in inference mode (training=False) so its BatchNorm statistics stay put,
    also after fine-tuning unfreezes it.
    """
    base = keras.applications.MobileNetV2(
        input_shape=input_shape,
        include_top=False,
        weights=resolve_weights(weights),
        name=BASE_NAME,
    )
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = _preprocessing(inputs, flip=flip, rotation=rotation, rescale="mobilenet_v2")
    x = base(x, training=False)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    x = pool()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name="transfer")


def resolve_weights(weights: str) -> str | None:
    """Map the `weights` setting to Keras' argument; a missing file is a clear error."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights file '{weights}' does not exist; give a path to a MobileNetV2 no-top "
            "weights file (.h5), 'imagenet' to download them, or 'none'"
        )
    return str(path)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "transfer": build_transfer,
}
OPTIMIZERS: dict[str, Callable[[float], keras.optimizers.Optimizer]] = {
    "adam": lambda lr: keras.optimizers.Adam(learning_rate=lr),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(learning_rate=lr),
    "sgd": lambda lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
}


@dataclass(frozen=True)
class Training:
    """How a model is trained; `epochs` None means train.epochs."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    epochs: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer '{self.optimizer}'; choose from: {', '.join(OPTIMIZERS)}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: its name, architecture, builder settings and training settings."""

    name: str
    arch: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    training: Training = Training()

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """Build the (uncompiled) model for images of `input_shape`."""
        return ARCHITECTURES[self.arch](input_shape, **self.settings)


@dataclass(frozen=True)
class FinetuneSpec:
    """A model that continues training `init_from`, unfrozen from layer `fine_tune_at` on."""

    name: str
    init_from: str
    fine_tune_at: int
    training: Training


_TRAINING_KEYS = {"optimizer", "learning_rate", "epochs"}


def _split_training(entry: Mapping[str, Any], where: str) -> tuple[dict, Training]:
    rest = {k: v for k, v in entry.items() if k not in _TRAINING_KEYS}
    training = from_mapping(
        Training, {k: v for k, v in entry.items() if k in _TRAINING_KEYS}, where
    )
    return rest, training


def model_spec(models: Mapping[str, Any], name: str) -> ModelSpec:
    """Check and return the zoo entry `name` of the `models` params section."""
    if name not in models:
        raise ConfigError(f"unknown model '{name}'; choose from: {', '.join(models)}")
    entry = models[name]
    where = f"models.{name}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"'{where}' must be a mapping of settings, got {entry!r}")
    rest, training = _split_training(entry, where)
    arch = rest.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture '{arch}' in '{where}.arch'; choose from: "
            f"{', '.join(ARCHITECTURES)}"
        )
    settings = check_settings(rest, keyword_hints(ARCHITECTURES[arch]), where)
    if "weights" in settings:
        resolve_weights(settings["weights"])  # a missing file fails before any training
    return ModelSpec(name=name, arch=arch, settings=settings, training=training)


def finetune_spec(finetune: Mapping[str, Any], name: str) -> FinetuneSpec:
    """Check and return the entry `name` of the `finetune` params section."""
    if name not in finetune:
        raise ConfigError(f"unknown fine-tuned model '{name}'; choose from: {', '.join(finetune)}")
    entry = finetune[name]
    where = f"finetune.{name}"
    rest, training = _split_training(entry, where)
    checked = check_settings(rest, {"init_from": str, "fine_tune_at": int}, where)
    for key in ("init_from", "fine_tune_at"):
        if key not in checked:
            raise ConfigError(f"missing setting '{where}.{key}'")
    return FinetuneSpec(name=name, training=training, **checked)


def compile_model(model: keras.Model, training: Training | None = None) -> keras.Model:
    """Compile for one logit: binary cross-entropy from logits, accuracy at logit 0.

    Without `training` the model gets Keras' default optimizer: enough to evaluate it.
    """
    optimizer = OPTIMIZERS[training.optimizer](training.learning_rate) if training else "rmsprop"
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    return model


def split_frozen_features(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """Split `model` into (frozen features, trainable head), when it starts with frozen layers.

    The features part is every layer before the first one with trainable weights. When it
    holds frozen weights (M4's base), it is at inference a fixed function of the image:
    rescaling is fixed, augmentation and dropout pass images through, the base's weights do
    not change. Its outputs on the validation images can therefore be computed once and
    reused every epoch, and head(features(x)) is model(x) with the same layers and weights.
    Returns None when nothing frozen comes before the first trainable layer (M1-M3, M5's
    partly unfrozen base) or when the head does not hang off that layer's input alone.
    """
    first_trainable = next((i for i, layer in enumerate(model.layers) if layer.trainable_weights), None)
    if first_trainable is None:
        return None
    frozen = model.layers[:first_trainable]
    if not any(layer.non_trainable_weights for layer in frozen):
        return None
    split = model.layers[first_trainable].input
    try:
        features = keras.Model(model.input, split, name=f"{model.name}_features")
        head = keras.Model(split, model.output, name=f"{model.name}_head")
    except ValueError:  # a branch reaches past the split: the head needs more than one input
        return None
    if len(head.trainable_weights) != len(model.trainable_weights):
        return None
    return features, head


def unfreeze_top(model: keras.Model, fine_tune_at: int) -> keras.Model:
    """Make the transfer base trainable from layer `fine_tune_at` on (the tutorial's phase 2)."""
    try:
        base = model.get_layer(BASE_NAME)
    except ValueError as error:
        raise ConfigError(
            f"model '{model.name}' has no '{BASE_NAME}' layer to fine-tune; "
            "init_from must name a transfer model"
        ) from error
    if not 0 <= fine_tune_at < len(base.layers):
        raise ConfigError(
            f"fine_tune_at must be in [0, {len(base.layers)}) for this base, got {fine_tune_at}"
        )
    base.trainable = True
    for layer in base.layers[:fine_tune_at]:
        layer.trainable = False
    return model


def count_params(model: keras.Model) -> dict[str, int]:
    """Total and trainable parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = trainable + sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {"total": total, "trainable": trainable}


def with_probability(model: keras.Model) -> keras.Model:
    """The model with a sigmoid on its logit: outputs P(dog), for serving and predict."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = layers.Activation("sigmoid", name=PROBABILITY_LAYER)(model(inputs, training=False))
    return keras.Model(inputs, outputs, name=f"{model.name}_probability")


def outputs_probability(model: keras.Model) -> bool:
    """Whether `model` ends in with_probability's sigmoid (else it outputs a logit)."""
    return model.layers[-1].name == PROBABILITY_LAYER


def augmentation_examples(model: keras.Model, image: Any, count: int = 9) -> dict[str, list]:
    """`count` random draws of each augmentation layer of `model` applied to one image.

    Returns {layer name: [images]} for the layers named random_flip and random_rotation;
    empty for a model without augmentation.
    """
    examples = {}
    for name in ("random_flip", "random_rotation"):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        batch = keras.ops.expand_dims(keras.ops.convert_to_tensor(image), 0)
        examples[name] = [keras.ops.convert_to_numpy(layer(batch, training=True))[0] for _ in range(count)]
    return examples
