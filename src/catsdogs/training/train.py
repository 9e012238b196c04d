"""Train one zoo model: build or load it, compile, fit, and describe the run.

Reads the split manifest's train and validation rows and the images they name; writes
nothing: returns the trained model (float32, whatever precision trained it) and a FitResult
for the caller to save and log. `resume_state` finds (or starts) the model's resume state
under `.catsdogs/resume/`, named by a digest of everything that decides the training;
`training_record` is how a model was trained, for the caller to keep beside it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

import catsdogs
from catsdogs.core.params import ConfigError
from catsdogs.data.input_pipeline import batches, decoded_images, decoder_fingerprint, disk_cache_for
from catsdogs.data.manifest import split_rows
from catsdogs.models.architectures import count_params, unfreeze_top
from catsdogs.models.model_file import input_size, load_model_file
from catsdogs.training.fit import EpochHook, FitResult, Resume, fit
from catsdogs.training.objective import compile_model
from catsdogs.training.precision import cpu_flags, gpu_capabilities, hardware_note, with_precision
from catsdogs.training.resume import RESUME_DIR, ResumeState, claimed, training_digest
from catsdogs.training.strategy import choose_strategy, set_determinism
from catsdogs.zoo.entries import TrainingJob
from catsdogs.zoo.settings import NOT_DECIDING

log = logging.getLogger(__name__)


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
