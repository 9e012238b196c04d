"""Validation on frozen features: a frozen base's outputs computed once, the head run each epoch.

`split_frozen_features` cuts a model whose first layers hold only frozen weights (M4's
MobileNetV2 base) into those layers and the trainable head; `FrozenFeatureValidation` then
stands in for fit's own validation pass, with the same numbers. Reads and writes nothing:
the cached features live in memory for the fit.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


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


class FrozenFeatureValidation(keras.callbacks.Callback):
    """Validate through the trainable head only, on frozen-layer outputs computed once.

    Stands in for fit's own validation when split_frozen_features() finds a frozen part
    (M4: rescaling, augmentation and the MobileNetV2 base), which is most of a validation
    pass's work and gives the same outputs every epoch. Writes val_loss and val_accuracy
    into the epoch's logs before later callbacks (timer, hooks, History) read them.
    """

    def __init__(self, features: keras.Model, head: keras.Model, validation: tf.data.Dataset) -> None:
        super().__init__()
        self.features, self.head, self.validation = features, head, validation
        self.cached: tf.data.Dataset | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.cached is None:  # in epoch 1's time, like the validation pass it replaces
            values = self.features.predict(self.validation.map(lambda images, labels: images), verbose=0)
            labels = [batch for _, batch in self.validation.as_numpy_iterator()]
            self.cached = tf.data.Dataset.from_tensor_slices(
                (values, np.concatenate(labels))
            ).batch(len(labels[0]))
        results = self.head.evaluate(self.cached, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"val_{name}": float(value) for name, value in results.items()})
