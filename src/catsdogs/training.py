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
import pandas as pd
import tensorflow as tf

from catsdogs.data import image_dataset, split_rows
from catsdogs.models import Training, compile_model

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

    auto: multi-worker when TF_CONFIG describes a cluster of several tasks (refused for now,
    see below), mirrored over all local GPUs when there is more than one, the default
    (single device) strategy otherwise. mirrored without GPUs mirrors over the logical CPU
    devices.
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
        # Keras 3's fit() feeds PerReplica values that MultiWorkerMirroredStrategy cannot
        # convert (keras-team/keras#20585, open); refuse before any work instead.
        raise ValueError(
            "multi-worker training is not supported: Keras 3's model.fit cannot run under "
            "MultiWorkerMirroredStrategy. Unset TF_CONFIG, or set train.strategy to default "
            "or mirrored (all GPUs of one machine)."
        )
    raise ValueError(
        f"unknown strategy '{name}'; choose from: auto, default, mirrored, multi_worker"
    )


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


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    *,
    epochs: int,
    train_images: int,
    epoch_hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Train `model` for `epochs`; call each hook with (epoch from 1, logs) after each epoch."""
    timer = _EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
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
        train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=2,
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
                 train_images=len(train_rows), epoch_hooks=epoch_hooks)
    return model, result
