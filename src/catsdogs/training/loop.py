"""Train one zoo model: build or load it, compile, fit, and describe the run.

Reads the split manifest's train and validation rows and the images they name; writes
nothing: returns the trained model (float32, whatever precision trained it) and a FitResult
(per-epoch history, speed, best epoch) for the caller to save and log. Per-epoch hooks let the
caller log to a tracker without this module knowing which. The loss and the accuracy are
defined once here, for Keras' fit and the multi-worker loop alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

import catsdogs
from catsdogs.core.params import ConfigError
from catsdogs.data.manifest import LOGIT_THRESHOLD, split_rows
from catsdogs.data.pipeline import batches, decoded_images, decoder_fingerprint, disk_cache_for
from catsdogs.models.architectures import count_params, unfreeze_top
from catsdogs.models.model_file import input_size, load_model_file
from catsdogs.training.history import EPOCH_METRICS, HISTORY_COLUMNS
from catsdogs.training.precision import (
    all_layers,
    cpu_flags,
    gpu_capabilities,
    hardware_note,
    with_precision,
)
from catsdogs.training.resume import RESUME_DIR, ResumeState, SavedState, claimed, training_digest
from catsdogs.zoo.entries import OptimizerConfig, TrainingJob
from catsdogs.zoo.settings import NOT_DECIDING, Strategy

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, float]], None]


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


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TF ops deterministic.

    Two runs with the same params on the same CPU then give identical weights and metrics.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def choose_strategy(name: Strategy) -> tf.distribute.Strategy:
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
    raise ConfigError(
        f"unknown strategy '{name}'; choose from: {', '.join(typing.get_args(Strategy))}"
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


class _InterruptsThatStick(keras.callbacks.Callback):
    """Ctrl-C during fit() stops it at the next batch boundary, and always stops it.

    A KeyboardInterrupt raised wherever the main thread happens to be lands inside
    TensorFlow's own Python code (a train step's call, the input pipeline's iterator),
    which does not expect it: the process can die there of a corrupted heap ("free():
    invalid next size") before the MLflow run is ended, or Keras can swallow it in the bare
    `except:` of keras.src.utils.python_utils.pythonify_logs and run on to the last epoch.
    So while fit() runs, the first SIGINT is only remembered and raised from a callback, at
    the next batch's start or end; a second one raises at once, for a batch that hangs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Remember SIGINT within the block; main thread only (signals arrive only there)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def remember(signum: int, frame: Any) -> None:
            if self.interrupted:  # asked twice: stop now, wherever that is
                raise KeyboardInterrupt
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, remember)
        try:
            yield
        finally:
            # None: a handler set outside Python; the default is the closest we can give back.
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        self._raise_if_interrupted()  # one that came after the last batch

    def _raise_if_interrupted(self, *_: Any, **__: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_begin = on_test_batch_begin = on_predict_batch_begin = _raise_if_interrupted
    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_interrupted
    on_epoch_begin = on_epoch_end = _raise_if_interrupted


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of each whole epoch: its training pass and its validation."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


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


class _EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch, save what the training needs to go on (`Resume.save`): every
    model and optimizer variable, and the history so far. Runs after the timer, which it
    reads, and before the epoch hooks (a Ctrl-C held through a tracking write is raised as
    that write ends: the epoch is saved by then). A save that fails (a full disk) is said
    once and saving stops: resume state changes no number, so the training goes on."""

    def __init__(self, save: Callable[[SavedState], None], earlier: pd.DataFrame | None,
                 timer: _EpochTimer) -> None:
        super().__init__()
        self.save, self.timer, self.failed = save, timer, False
        self.rows = [] if earlier is None else earlier.to_dict("records")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.rows.append({"epoch": epoch + 1, **{k: float(logs[k]) for k in EPOCH_METRICS},
                          "seconds": round(self.timer.seconds[-1], 3)})
        if self.failed:
            return
        model = self.model
        try:
            self.save(SavedState(
                epoch=epoch + 1, model_variables=[v.numpy() for v in model.variables],
                optimizer_variables=[v.numpy() for v in model.optimizer.variables],
                history=pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)))
        except OSError as error:
            self.failed = True
            log.warning("cannot save the resume state after epoch %d (%s): training goes on "
                        "without it", epoch + 1, error)


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
    saved = resume.saved if resume else None
    done = saved.epoch if saved is not None else 0
    if resume is not None:  # saved before the hooks log the epoch
        callbacks.insert(callbacks.index(timer) + 1,
                         _EpochCheckpoint(resume.save, saved and saved.history, timer))
    stopper = _InterruptsThatStick()
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


def initial_model(job: TrainingJob, init_from: Path | None) -> keras.Model:
    """The model `job` starts from: built new, or (fine-tuning) loaded and unfrozen."""
    if job.finetune is None:
        return job.model.build(job.input_shape)
    if init_from is None:
        raise ConfigError(f"'{job.name}' fine-tunes '{job.finetune.init_from}': pass --init-from "
                          f"models/{job.finetune.init_from}")
    model = load_model_file(init_from)
    if input_size(model) != job.config.image_size:
        raise ConfigError(
            f"'{init_from}' takes {input_size(model)} px images, but params give "
            f"'{job.finetune.init_from}' {job.config.image_size} px; run its train stage again"
        )
    return unfreeze_top(model, job.finetune.fine_tune_at, where=f"finetune.{job.name}")


def _resume_digest(job: TrainingJob, strategy: tf.distribute.Strategy, manifest_path: Path,
                   manifest: pd.DataFrame, images_dir: Path, init_from: Path | None, stage: Path,
                   machine_fingerprint: str) -> str:
    """The digest naming `job`'s resume state (`catsdogs.training.resume.training_digest`): its
    settings, the strategy it resolved to (and over which devices), the decoder's
    libraries, the manifest, the train and validation photos, the model it fine-tunes, the
    pretrained weights it loads, the stage script and this package's code, and the machine
    (whose fingerprint names no GPU: the devices say it)."""
    devices = [tf.config.experimental.get_device_details(gpu)
               for gpu in tf.config.list_physical_devices("GPU")]
    settings = {"name": job.name, "seed": job.seed, "entry": job.entry,
                "train": {k: v for k, v in dataclasses.asdict(job.config).items()
                          if k not in NOT_DECIDING},
                "strategy": [type(strategy).__name__, strategy.num_replicas_in_sync, devices],
                "decoder": decoder_fingerprint()}
    rows = manifest[manifest["split"].isin(["train", "validation"])]
    files = [manifest_path, *(Path(images_dir) / p for p in rows["path"])]
    if init_from is not None:
        files += sorted(p for p in Path(init_from).rglob("*") if p.is_file())
    weights = job.entry.get("weights")
    if isinstance(weights, str) and Path(weights).is_file():
        files.append(Path(weights))
    code = [stage, *sorted(Path(catsdogs.__file__).parent.rglob("*.py"))]  # the whole package
    return training_digest(settings, files, code, machine_fingerprint)


@contextmanager
def resume_state(job: TrainingJob, strategy: tf.distribute.Strategy, manifest_path: Path,
                 manifest: pd.DataFrame, images_dir: Path, init_from: Path | None, *,
                 stage: Path, machine_fingerprint: str,
                 root: Path = RESUME_DIR) -> Iterator[ResumeState | None]:
    """`job`'s resume state under `root` (relative: in the project DVC runs the stage in),
    held for the block; None where `train.resume` is off, under the multi-worker loop, or
    while another process holds it (said in the log)."""
    if not job.config.resume:
        yield None
        return
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        log.warning("train.resume: the multi-worker loop keeps no resume state (its workers "
                    "would each have to restore theirs): %s starts at epoch 1", job.name)
        yield None
        return
    digest = _resume_digest(job, strategy, manifest_path, manifest, images_dir, init_from,
                            stage, machine_fingerprint)
    with claimed(root, job.name, digest) as state:
        yield state


def train_model(
    job: TrainingJob,
    manifest: pd.DataFrame,
    images_dir: Path,
    *,
    init_from: Path | None = None,
    epoch_hooks: Sequence[EpochHook] = (),
    strategy: tf.distribute.Strategy | None = None,
    resume: Resume | None = None,
) -> tuple[keras.Model, FitResult]:
    """Seed, build (or load, to fine-tune) and compile under `strategy`, then fit (going on
    from `resume`'s saved state, and saving its own after each epoch, where given).

    Trains on the manifest's `train` rows and validates on its `validation` rows; `test`
    rows are never read here. Trains in `job.config.precision`; returns the model in float32.
    The batch size is global: replicas share each batch.
    """
    config = job.config
    strategy = strategy or choose_strategy(config.strategy)
    note = hardware_note(config.precision, job.setting("precision"), flags=cpu_flags(),
                         gpus=gpu_capabilities())
    if note:
        (log.warning if note[0] == "warning" else log.info)("%s", note[1])
    set_determinism(job.seed)
    with strategy.scope():
        model = compile_model(with_precision(initial_model(job, init_from), config.precision),
                              job.optimizer)
    train_rows = split_rows(manifest, "train")
    val_rows = split_rows(manifest, "validation")
    log.info("training %s on %d images, validating on %d, %d px, batch %d, %s, %s over %d "
             "replica(s)", job.name, len(train_rows), len(val_rows), config.image_size,
             config.batch_size, config.precision, type(strategy).__name__,
             strategy.num_replicas_in_sync)
    cache_dir = disk_cache_for(len(train_rows) + len(val_rows), config.image_size,
                               config.memory_budget_mb, config.cache_dir)
    stores = {split: decoded_images(rows, images_dir, image_size=config.image_size,
                                    cache_dir=cache_dir)
              for split, rows in (("train", train_rows), ("validation", val_rows))}

    def dataset(split: str, share: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
        rows = train_rows if split == "train" else val_rows
        return batches(stores[split], rows["label_index"].to_numpy(), batch_size=config.batch_size,
                       shuffle=split == "train", seed=job.seed, share=share)

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Each worker reads only its part of every batch (its share of the photos).
        train_ds, val_ds = (
            lambda context, split=split: dataset(
                split, (context.input_pipeline_id, context.num_input_pipelines))
            for split in ("train", "validation"))
    else:
        train_ds, val_ds = dataset("train"), dataset("validation")
    result = fit(model, train_ds, val_ds, epochs=config.epochs, train_images=len(train_rows),
                 epoch_hooks=epoch_hooks, strategy=strategy, resume=resume)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        log.info("this worker read %d of the %d training photos and %d of the %d validation "
                 "photos per epoch", stores["train"].photos_read // config.epochs, len(train_rows),
                 stores["validation"].photos_read // config.epochs, len(val_rows))
    return with_precision(model, "float32"), result


def training_record(job: TrainingJob, model: keras.Model, result: FitResult) -> dict[str, Any]:
    """How a model was trained, beside it in its folder (`TRAINING_FILE`): the settings that
    shaped its numbers (image size, batch size, precision), its size and the fit's timings.
    Not metrics: DVC diffs metrics/train/<model>.json, which holds only what the fit scored."""
    return {"image_size": job.config.image_size, "batch_size": job.config.batch_size,
            "precision": job.config.precision, "params": count_params(model), **result.timings()}
