"""The training objective: the loss every model trains on, the accuracy it reports, compiling.

Binary cross-entropy on the one logit, and accuracy with a logit above LOGIT_THRESHOLD read
as dog: defined once here, for Keras' fit and the multi-worker loop alike
(`catsdogs.training.fit`). Reads and writes nothing.
"""

from __future__ import annotations

import keras

from catsdogs.data.manifest import LOGIT_THRESHOLD
from catsdogs.training.precision import all_layers
from catsdogs.zoo.entries import OptimizerConfig


def logit_loss(reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
    """Binary cross-entropy on the logit: the training loss of every model."""
    return keras.losses.BinaryCrossentropy(from_logits=True, reduction=reduction)


def logit_accuracy() -> keras.metrics.Metric:
    """Accuracy with a logit above LOGIT_THRESHOLD read as dog (Keras compares with `>`)."""
    return keras.metrics.BinaryAccuracy(name="accuracy", threshold=LOGIT_THRESHOLD)


def compile_model(model: keras.Model, optimizer: OptimizerConfig | None = None) -> keras.Model:
    """Compile for one logit with `logit_loss()` and `logit_accuracy()`.

    Without `optimizer` the model gets Keras' default optimizer: enough to evaluate it. A
    model computing in float16 gets loss scaling, so small gradients do not underflow: Keras
    adds it only for a model whose own policy is mixed_float16, and a Functional model
    rebuilt by `with_precision` keeps a float32 policy of its own.
    """
    built = optimizer.build() if optimizer else "rmsprop"
    if optimizer and any(layer.compute_dtype == "float16" for layer in all_layers(model)):
        built = keras.optimizers.LossScaleOptimizer(built)
    model.compile(optimizer=built, loss=logit_loss(), metrics=[logit_accuracy()])
    return model
