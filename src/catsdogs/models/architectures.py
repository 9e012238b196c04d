"""The model zoo's builders, registered by architecture name, and the layers they share.

Each builder is `build_x(input_shape, **settings) -> keras.Model`, with its settings as typed
keyword-only parameters (ranges in `Annotated`): `catsdogs.zoo.entries` checks params.yaml against those
signatures. Rescaling and augmentation are layers inside the model, so a saved model takes
raw RGB images in [0, 255] and carries its own preprocessing. Every model outputs one logit
(dog vs cat) from a float32 layer named `logit`. A transfer builder names its pretrained
network `BASE_LAYER`, which is what fine-tuning unfreezes. Adding an architecture is one
builder here plus an `ARCHITECTURES` entry; a zoo entry in params.yaml then uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
from keras import layers

from catsdogs.core.params import ConfigError, Range

Flip = Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
Rescale = Literal["none", "mobilenet_v2"]
Pooling = Literal["max", "avg"]
Dropout = Annotated[float, Range(0, 1, high_open=True)]
Rotation = Annotated[float, Range(0, 1)]
Count = Annotated[int, Range(1)]
# The pretrained network inside a transfer model: fine-tuning unfreezes its top layers.
BASE_LAYER = "base"
# The model's output layer; it stays float32 under mixed precision, so the loss is stable.
LOGIT_LAYER = "logit"
# The layers in front of the first convolution, float32 under any precision policy: scaled
# to [-1, 1], bfloat16's 8 significant bits keep about half of the 256 levels of a pixel
# (M3 lost 2.6 points of validation accuracy), and augmentation gains nothing from it.
PREPROCESSING_LAYERS = ("rescale", "random_flip", "random_rotation")
FLOAT32_LAYERS = (*PREPROCESSING_LAYERS, LOGIT_LAYER)


def preprocessing(inputs: Any, *, flip: Flip, rotation: float, rescale: Rescale) -> Any:
    """Rescaling then augmentation layers on `inputs`; augmentation acts in training only."""
    rescale_layer, flip_layer, rotation_layer = PREPROCESSING_LAYERS
    x = inputs
    if rescale == "mobilenet_v2":
        # MobileNetV2's preprocess_input: [0, 255] -> [-1, 1].
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name=rescale_layer, dtype="float32")(x)
    if flip != "none":
        x = layers.RandomFlip(flip, name=flip_layer, dtype="float32")(x)
    if rotation:
        x = layers.RandomRotation(rotation, name=rotation_layer, dtype="float32")(x)
    return x


def logit(x: Any) -> Any:
    """The one-unit output layer every model ends in, float32 whatever the precision policy."""
    return layers.Dense(1, name=LOGIT_LAYER, dtype="float32")(x)


def build_cnn(
    input_shape: tuple[int, int, int],
    *,
    filters: Count = 32,
    blocks: Count = 3,
    kernel_size: Count = 3,
    dense_units: Count = 128,
    dropout: Dropout = 0.2,
    flip: Flip = "none",
    rotation: Rotation = 0.0,
    rescale: Rescale = "none",
) -> keras.Model:
    """The post's small CNN (M1), optionally with augmentation (M2) and rescaling (M3).

    blocks x (Conv2D relu + MaxPooling2D), Flatten, Dense relu, Dropout, Dense(1) logit.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocessing(inputs, flip=flip, rotation=rotation, rescale=rescale)
    for _ in range(blocks):
        x = layers.Conv2D(filters, kernel_size, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, logit(x), name="cnn")


def transfer_head(
    base: keras.Model,
    input_shape: tuple[int, int, int],
    *,
    rescale: Rescale,
    pooling: Pooling,
    dense_units: int,
    dropout: float,
    flip: Flip,
    rotation: float,
) -> keras.Model:
    """A frozen pretrained `base` (named BASE_LAYER) between preprocessing and a new head.

    The head is pooling, Dropout, Dense relu, Dropout, Dense(1) logit. The base is called
    with training=False, as the tutorial does; that alone does not keep its BatchNorm layers
    in inference mode once it is unfrozen (see unfreeze_top).
    """
    if base.name != BASE_LAYER:
        raise ValueError(f"a transfer base must be named '{BASE_LAYER}', got '{base.name}'")
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocessing(inputs, flip=flip, rotation=rotation, rescale=rescale)
    x = base(x, training=False)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    x = pool()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, logit(x), name="transfer")


def build_transfer(
    input_shape: tuple[int, int, int],
    *,
    weights: str = "imagenet",
    pooling: Pooling = "max",
    dense_units: Count = 128,
    dropout: Dropout = 0.2,
    flip: Flip = "none",
    rotation: Rotation = 0.0,
) -> keras.Model:
    """Transfer learning (M4): MobileNetV2 scaling, augmentation, its frozen base, a new head.

    `weights` is a path to a no-top weights file (the default recipe's: the one the
    `pretrained` stage fetched), "imagenet" (Keras downloads the checkpoint for the input
    size), or "none" (random).
    """
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, include_top=False, weights=resolve_weights(weights),
        name=BASE_LAYER,
    )
    return transfer_head(base, input_shape, rescale="mobilenet_v2", pooling=pooling,
                         dense_units=dense_units, dropout=dropout, flip=flip, rotation=rotation)


def resolve_weights(weights: str) -> str | None:
    """Map the `weights` setting to Keras' argument; a missing file is a clear error."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights file '{weights}' does not exist; run `dvc repro pretrained` if it is "
            "the pretrained stage's, or give a path to the base network's no-top weights "
            "file (.h5), 'imagenet' to download them, or 'none'"
        )
    return str(path)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "transfer": build_transfer,
}


def unfreeze_top(model: keras.Model, fine_tune_at: int, where: str = "finetune.<name>"
                 ) -> keras.Model:
    """Make the pretrained base trainable from layer `fine_tune_at` on (the tutorial's phase 2).

    Its BatchNormalization layers stay frozen. A Keras 3 Functional model passes the outer
    call's `training` to every layer it calls, overriding the `training=False` the base was
    called with, so in fit() a trainable BatchNorm would normalise with the batch's
    statistics and overwrite the ImageNet moving averages with a few cat and dog batches.
    A non-trainable BatchNorm runs in inference mode whatever `training` says.

    `where` is the params entry the settings come from, named in errors.
    """
    try:
        base = model.get_layer(BASE_LAYER)
    except ValueError as error:
        raise ConfigError(
            f"model '{model.name}' has no pretrained '{BASE_LAYER}' network to fine-tune; "
            f"'{where}.init_from' must name a transfer model"
        ) from error
    if not 0 <= fine_tune_at < len(base.layers):
        raise ConfigError(
            f"setting '{where}.fine_tune_at' must be in [0, {len(base.layers)}) for this base, "
            f"got {fine_tune_at}"
        )
    base.trainable = True
    for index, layer in enumerate(base.layers):
        if index < fine_tune_at or isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return model


def count_params(model: keras.Model) -> dict[str, int]:
    """Total and trainable parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = trainable + sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {"total": total, "trainable": trainable}


def summary_text(model: keras.Model) -> str:
    """Keras' layer-by-layer summary of `model` as text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines) + "\n"


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
        batch = keras.ops.expand_dims(keras.ops.convert_to_tensor(image, dtype="float32"), 0)
        examples[name] = [keras.ops.convert_to_numpy(layer(batch, training=True))[0] for _ in range(count)]
    return examples
