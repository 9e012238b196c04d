"""Fit a compiled model: Keras' fit with its callbacks, or the multi-worker loop.

Reads the training and validation datasets it is given; writes nothing: the model's variables
change in place, and a FitResult (per-epoch history, speed, best epoch) is returned for the
caller to save and log. Per-epoch hooks let the caller log to a tracker without this module
knowing which. With a `Resume`, goes on after the epochs an earlier run saved and hands each
epoch's state to its save function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

from catsdogs.data.manifest import LOGIT_THRESHOLD
from catsdogs.training.callbacks import EpochCheckpoint, EpochTimer, InterruptsThatStick
from catsdogs.training.frozen_features import FrozenFeatureValidation, split_frozen_features
from catsdogs.training.history import EPOCH_METRICS, HISTORY_COLUMNS
from catsdogs.training.objective import compile_model, logit_loss
from catsdogs.training.resume import SavedState

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, float]], None]


# Keras 3's fit() makes two iterators of the training dataset per epoch: the epoch's own,
# and one it makes at the end of the epoch and drops. With reshuffle_each_iteration each
# draws the next shuffle order from the dataset's seed, so a resumed fit reaches epoch k+1's
# order by first making (and dropping) this many iterators per epoch already trained.
# tests/test_resume.py fails if a Keras version changes it.
FIT_ITERATORS_PER_EPOCH = 2


@dataclass(frozen=True)
class Resume:
    """How fit() goes on from an earlier run and saves its own state after each epoch: the
    state an earlier run saved (or None: start at epoch 1), and where to save."""

    saved: SavedState | None
    save: Callable[[SavedState], None]


def restore_variables(model: keras.Model, saved: SavedState) -> None:
    """Put a saved state's values into `model`'s variables and its optimizer's (built here
    first: Keras makes an optimizer's variables at its first step)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    pairs = ((model.variables, saved.model_variables, "model"),
             (model.optimizer.variables, saved.optimizer_variables, "optimizer"))
    for variables, values, what in pairs:  # every check before any assignment
        shapes = [tuple(v.shape) for v in variables]
        if shapes != [tuple(a.shape) for a in values]:
            raise ValueError(f"the saved {what} state does not fit this model: {len(values)} "
                             f"arrays for {len(shapes)} variables")
    for variables, values, _ in pairs:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


@dataclass(frozen=True)
class FitResult:
    """The per-epoch history (epochs numbered from 1) and throughput figures."""

    history: pd.DataFrame
    train_images: int
    seconds: float

    def metrics(self) -> dict[str, Any]:
        """The fit's numbers, metrics/train/<model>.json: the last epoch's and the best."""
        last = self.history.iloc[-1]
        best = self.history.loc[self.history["val_accuracy"].idxmax()]
        return {
            "val_accuracy": float(last["val_accuracy"]),
            "val_loss": float(last["val_loss"]),
            "accuracy": float(last["accuracy"]),
            "loss": float(last["loss"]),
            "best_val_accuracy": float(best["val_accuracy"]),
            "best_val_loss": float(self.history["val_loss"].min()),
            "best_epoch": int(best["epoch"]),
        }

    def timings(self) -> dict[str, Any]:
        """How long the fit took: epochs, seconds in all, per steady epoch, images/s."""
        # Epoch 1 pays for tracing the graphs (and M4's frozen features); later epochs show
        # the steady state.
        seconds = self.history["seconds"]
        steady = seconds.iloc[1:] if len(seconds) > 1 else seconds
        return {
            "epochs": len(self.history),
            "seconds": round(self.seconds, 3),
            "seconds_per_epoch": round(float(steady.mean()), 3),
            # Over whole epochs, validation included: what a user waits for, not the step's
            # speed (M4 validates almost free, on its frozen features).
            "images_per_second": round(self.train_images / float(steady.mean()), 2),
        }


# Under MultiWorkerMirroredStrategy, a worker's dataset is made for its input context.
WorkerDataset = Callable[[tf.distribute.InputContext], tf.data.Dataset]


def _fit_multi_worker(
    model: keras.Model,
    train: WorkerDataset,
    validation: WorkerDataset,
    *,
    epochs: int,
    strategy: tf.distribute.Strategy,
    epoch_hooks: Sequence[EpochHook],
) -> pd.DataFrame:
    """The same training as fit() in a loop of strategy.run steps.

    Keras 3's model.fit cannot run under MultiWorkerMirroredStrategy (it hands PerReplica
    values to ops that cannot take them: keras-team/keras#20585), but the model, its
    optimizer and strategy.run can. Loss and accuracy are summed over all replicas' examples,
    then divided by the count, as fit() reports them. Each worker makes its own datasets
    from its input context: it reads only its share of the photos.
    """
    with strategy.scope():
        per_example = logit_loss(reduction="none")
    optimizer = model.optimizer
    total = tf.distribute.ReduceOp.SUM

    def tallies(labels: tf.Tensor, logits: tf.Tensor, losses: tf.Tensor) -> tuple:
        predicted = tf.cast(logits > LOGIT_THRESHOLD, labels.dtype)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
        return tf.reduce_sum(losses), correct, tf.cast(tf.shape(labels)[0], tf.float32)

    def train_replica(images: tf.Tensor, labels: tf.Tensor) -> tuple:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_example(labels, logits)
            # Scaled for mixed_float16 (a no-op otherwise); apply_gradients unscales.
            scaled = optimizer.scale_loss(tf.nn.compute_average_loss(losses))
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return tallies(labels, logits, losses)

    def eval_replica(images: tf.Tensor, labels: tf.Tensor) -> tuple:
        logits = model(images, training=False)
        return tallies(labels, logits, per_example(labels, logits))

    @tf.function
    def step(replica_fn, images, labels):
        results = strategy.run(replica_fn, args=(images, labels))
        return [strategy.reduce(total, r, axis=None) for r in results]

    def run_epoch(dataset: WorkerDataset, replica_fn) -> tuple[float, float]:
        sums = [0.0, 0.0, 0.0]
        for images, labels in strategy.distribute_datasets_from_function(dataset):
            sums = [a + float(b) for a, b in zip(sums, step(replica_fn, images, labels), strict=True)]
        return sums[0] / sums[2], sums[1] / sums[2]

    rows = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        # In EPOCH_METRICS' order: the training pass's loss and accuracy, then validation's.
        numbers = (*run_epoch(train, train_replica), *run_epoch(validation, eval_replica))
        logs = dict(zip(EPOCH_METRICS, numbers, strict=True))
        rows.append({"epoch": epoch, **logs, "seconds": round(time.perf_counter() - started, 3)})
        log.info("epoch %d/%d: %s", epoch, epochs, ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        for hook in epoch_hooks:
            hook(epoch, logs)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def fit(
    model: keras.Model,
    train: tf.data.Dataset | WorkerDataset,
    validation: tf.data.Dataset | WorkerDataset,
    *,
    epochs: int,
    train_images: int,
    epoch_hooks: Sequence[EpochHook] = (),
    strategy: tf.distribute.Strategy | None = None,
    resume: Resume | None = None,
) -> FitResult:
    """Train `model` for `epochs`; call each hook with (epoch from 1, logs) after each epoch.
    With `resume`, go on after the epochs an earlier run saved (hooks are called for the
    epochs trained here), and save the state after each epoch.

    Under MultiWorkerMirroredStrategy, `train` and `validation` are functions of a worker's
    input context (`WorkerDataset`); otherwise datasets.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        if resume is not None:
            raise ValueError("the multi-worker loop keeps no resume state: pass resume=None")
        started = time.perf_counter()
        history = _fit_multi_worker(model, train, validation, epochs=epochs, strategy=strategy,
                                    epoch_hooks=epoch_hooks)
        return FitResult(history, train_images=train_images, seconds=time.perf_counter() - started)
    timer = EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    validation_data: tf.data.Dataset | None = validation
    with (strategy or tf.distribute.get_strategy()).scope():
        split = split_frozen_features(model)
        if split:
            features, head = split
            compile_model(head)
            callbacks.insert(0, FrozenFeatureValidation(features, head, validation))
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
    saved = resume.saved if resume else None
    done = saved.epoch if saved is not None else 0
    if resume is not None:  # saved before the hooks log the epoch
        callbacks.insert(callbacks.index(timer) + 1,
                         EpochCheckpoint(resume.save, saved and saved.history, timer))
    stopper = InterruptsThatStick()
    started = time.perf_counter()
    with stopper.installed():
        if saved is not None:
            with (strategy or tf.distribute.get_strategy()).scope():  # where its variables live
                restore_variables(model, saved)
            if train.cardinality() < 0:
                raise ValueError("resuming needs a training dataset of known length: fit() "
                                 "makes another number of iterators of one of unknown length")
            for _ in range(FIT_ITERATORS_PER_EPOCH * done):
                iter(train)  # draws, and drops, a shuffle order, as fit() did in those epochs
            log.info("resuming after epoch %d of %d, from the state saved then", done, epochs)
        keras_history = model.fit(
            train, validation_data=validation_data, epochs=epochs, initial_epoch=done,
            callbacks=[stopper, *callbacks],
            verbose=2, shuffle=False,  # the dataset shuffles itself, seeded, each epoch
        ) if done < epochs else None
    # The whole training's time: the earlier runs' epochs, and this one's fit.
    seconds = time.perf_counter() - started + (
        float(saved.history["seconds"].sum()) if saved is not None else 0.0)
    history = pd.DataFrame(keras_history.history if keras_history else {},
                           columns=EPOCH_METRICS, dtype="float64")
    history.insert(0, "epoch", range(done + 1, done + len(history) + 1))
    history["seconds"] = [round(s, 3) for s in timer.seconds]
    if saved is not None:
        history = pd.concat([saved.history, history], ignore_index=True) if len(history) else \
            saved.history
    return FitResult(history=history[HISTORY_COLUMNS], train_images=train_images, seconds=seconds)
