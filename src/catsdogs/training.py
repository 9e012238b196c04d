"""Fit a compiled model and describe the run: per-epoch history, speed, best epoch.

Reads tf.data datasets, writes nothing: the caller saves the model and the numbers. Per-epoch
hooks let the caller log to a tracker without this module knowing which.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from catsdogs.data import image_dataset, split_rows
from catsdogs.models import Training, compile_model, split_frozen_features

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, float]], None]
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


@dataclass(frozen=True)
class TrainConfig:
    """The `train` params section."""

    image_size: int = 160
    batch_size: int = 32
    epochs: int = 20
    strategy: str = "auto"

    def __post_init__(self) -> None:
        for key in ("image_size", "batch_size", "epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be at least 1, got {getattr(self, key)}")


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic.

    Two runs with the same params on the same CPU then give identical weights and metrics.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def choose_strategy(name: str) -> tf.distribute.Strategy:
    """Pick a tf.distribute strategy: auto, default, mirrored or multi_worker.

    auto: multi-worker when TF_CONFIG describes a cluster of several tasks, mirrored over all
    local GPUs when there is more than one, the default (single device) strategy otherwise.
    mirrored without GPUs mirrors over the logical CPU devices. Create it before any other
    TensorFlow work: multi-worker collectives must be set up first in the process.
    """
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        f"unknown strategy '{name}'; choose from: auto, default, mirrored, multi_worker"
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes outputs and logs: always, except on non-chief workers.

    In a multi-worker cluster the chief is the `chief` task, or worker 0 when there is none.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training pass, validation included."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class _FrozenFeatureValidation(keras.callbacks.Callback):
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


@dataclass(frozen=True)
class TrainResult:
    """The per-epoch history (epochs numbered from 1) and throughput figures."""

    history: pd.DataFrame
    train_images: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The numbers for metrics/train/<model>.json."""
        last = self.history.iloc[-1]
        best = self.history.loc[self.history["val_accuracy"].idxmax()]
        # Epoch 1 pays for decoding every JPEG once; later epochs show the steady state.
        seconds = self.history["seconds"]
        steady = seconds.iloc[1:] if len(seconds) > 1 else seconds
        return {
            "epochs": int(len(self.history)),
            "val_accuracy": float(last["val_accuracy"]),
            "val_loss": float(last["val_loss"]),
            "accuracy": float(last["accuracy"]),
            "loss": float(last["loss"]),
            "best_val_accuracy": float(best["val_accuracy"]),
            "best_val_loss": float(self.history["val_loss"].min()),
            "best_epoch": int(best["epoch"]),
            "seconds": round(self.seconds, 3),
            "seconds_per_epoch": round(float(steady.mean()), 3),
            "images_per_second": round(self.train_images / float(steady.mean()), 2),
        }


def _fit_multi_worker(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    *,
    epochs: int,
    strategy: tf.distribute.Strategy,
    epoch_hooks: Sequence[EpochHook],
) -> pd.DataFrame:
    """The same training as fit() in a loop of strategy.run steps.

    Keras 3's model.fit cannot run under MultiWorkerMirroredStrategy (it hands PerReplica
    values to ops that cannot take them: keras-team/keras#20585), but the model, its
    optimizer and strategy.run can. Loss and accuracy are summed over all replicas' examples,
    then divided by the count, as fit() reports them.
    """
    with strategy.scope():
        per_example = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")
    optimizer = model.optimizer
    total = tf.distribute.ReduceOp.SUM

    def tallies(labels: tf.Tensor, logits: tf.Tensor, losses: tf.Tensor) -> tuple:
        predicted = tf.cast(logits >= 0.0, labels.dtype)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
        return tf.reduce_sum(losses), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def train_replica(images: tf.Tensor, labels: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_example(labels, logits)
            loss = tf.nn.compute_average_loss(losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return tallies(labels, logits, losses)

    def eval_replica(images: tf.Tensor, labels: tf.Tensor) -> tuple:
        logits = model(images, training=False)
        return tallies(labels, logits, per_example(labels, logits))

    @tf.function
    def step(replica_fn, images, labels):  # noqa: ANN001, ANN202
        results = strategy.run(replica_fn, args=(images, labels))
        return [strategy.reduce(total, r, axis=None) for r in results]

    def run_epoch(dataset: tf.data.Dataset, replica_fn) -> tuple[float, float]:  # noqa: ANN001
        sums = [0.0, 0.0, 0.0]
        for images, labels in strategy.experimental_distribute_dataset(dataset):
            sums = [a + float(b) for a, b in zip(sums, step(replica_fn, images, labels), strict=True)]
        return sums[0] / sums[2], sums[1] / sums[2]

    rows = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        loss, accuracy = run_epoch(train, train_replica)
        val_loss, val_accuracy = run_epoch(validation, eval_replica)
        logs = {"loss": loss, "accuracy": accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy}
        rows.append({"epoch": epoch, **logs, "seconds": round(time.perf_counter() - started, 3)})
        log.info("epoch %d/%d: %s", epoch, epochs, ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        for hook in epoch_hooks:
            hook(epoch, logs)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    *,
    epochs: int,
    train_images: int,
    epoch_hooks: Sequence[EpochHook] = (),
    strategy: tf.distribute.Strategy | None = None,
) -> TrainResult:
    """Train `model` for `epochs`; call each hook with (epoch from 1, logs) after each epoch."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        started = time.perf_counter()
        history = _fit_multi_worker(model, train, validation, epochs=epochs, strategy=strategy,
                                    epoch_hooks=epoch_hooks)
        return TrainResult(history, train_images=train_images, seconds=time.perf_counter() - started)
    timer = _EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    validation_data: tf.data.Dataset | None = validation
    with (strategy or tf.distribute.get_strategy()).scope():
        split = split_frozen_features(model)
        if split:
            features, head = split
            compile_model(head)
            callbacks.insert(0, _FrozenFeatureValidation(features, head, validation))
            validation_data = None
            log.info("validating on frozen features (%s) computed once: only the head runs "
                     "each epoch", features.output.shape[1:])
    for hook in epoch_hooks:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs, hook=hook: hook(
                    epoch + 1, {k: float(v) for k, v in (logs or {}).items()}
                )
            )
        )
    started = time.perf_counter()
    keras_history = model.fit(
        train, validation_data=validation_data, epochs=epochs, callbacks=callbacks, verbose=2,
        shuffle=False,  # the dataset shuffles itself, seeded, each epoch
    )
    seconds = time.perf_counter() - started
    history = pd.DataFrame(keras_history.history)
    history.insert(0, "epoch", range(1, len(history) + 1))
    history["seconds"] = [round(s, 3) for s in timer.seconds]
    return TrainResult(history=history[HISTORY_COLUMNS], train_images=train_images, seconds=seconds)


def train(
    build_model: Callable[[], keras.Model],
    training: Training,
    manifest: pd.DataFrame,
    images_dir: Path,
    config: TrainConfig,
    *,
    seed: int,
    epoch_hooks: Sequence[EpochHook] = (),
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, TrainResult]:
    """Seed, build and compile (under `strategy`, else config.strategy), then fit.

    Trains on the manifest's `train` rows and validates on its `validation` rows; `test`
    rows are never read here. `training.epochs` overrides `config.epochs` when set. The
    batch size is global: replicas share each batch.
    """
    strategy = strategy or choose_strategy(config.strategy)
    set_determinism(seed)
    with strategy.scope():
        model = compile_model(build_model(), training)
    train_rows = split_rows(manifest, "train")
    val_rows = split_rows(manifest, "validation")
    log.info("training on %d images, validating on %d, %d px, batch %d, %s over %d replica(s)",
             len(train_rows), len(val_rows), config.image_size, config.batch_size,
             type(strategy).__name__, strategy.num_replicas_in_sync)
    common = {"image_size": config.image_size, "batch_size": config.batch_size, "seed": seed}
    train_ds = image_dataset(train_rows, images_dir, shuffle=True, **common)
    val_ds = image_dataset(val_rows, images_dir, shuffle=False, **common)
    result = fit(model, train_ds, val_ds, epochs=training.epochs or config.epochs,
                 train_images=len(train_rows), epoch_hooks=epoch_hooks, strategy=strategy)
    return model, result
