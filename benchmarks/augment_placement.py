"""Benchmark: where M2/M3's augmentation should run, measured (issue #23).

Trains M2 on the real training photos with its RandomFlip + RandomRotation placed three ways, and without it:

- `model`: layers inside the model, as params.yaml builds it: they run in the training step,
  batch-wise (one transform op per batch, a random angle per photo);
- `pipeline`: the same layers mapped over each *batch* in tf.data, so they can overlap the
  training step (in parallel and prefetched only with --nondeterministic: TensorFlow's op
  determinism, which the train stage turns on, runs a stateful map serially); the model has
  no augmentation layers;
- `per_image`: the same layers mapped over each *photo* in tf.data before batching;
- `none`: no augmentation at all (M1's model), the floor: what augmentation costs is the
  difference.

Each arm in float32 and, with --precision, in that policy; arms alternate within each repeat
so machine noise hits all of them. Also times the augmentation alone on one batch: both
layers batch-wise, each layer alone, and both photo by photo. Prints the fastest steady
epoch per arm and its ratio to `model`. Figures are printed, never asserted.

    PYTHONPATH=src python benchmarks/augment_placement.py \
        --data ../shared/data/cats_and_dogs_filtered.zip --precision mixed_bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from train_speed import EpochClock, photos_and_split  # benchmarks/, the script's own folder

from catsdogs.core.params import load_params
from catsdogs.data.input_pipeline import batches, decoded_images
from catsdogs.models.architectures import ARCHITECTURES
from catsdogs.training.objective import compile_model
from catsdogs.training.precision import with_precision
from catsdogs.training.strategy import set_determinism
from catsdogs.zoo.entries import training_job

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("model", "pipeline", "per_image", "none")


def augmentation_layers(settings: dict) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    """The zoo entry's RandomFlip and RandomRotation alone, float32 as the models build them."""
    return (keras.layers.RandomFlip(settings["flip"], dtype="float32"),
            keras.layers.RandomRotation(settings["rotation"], dtype="float32"))


def augmentation(settings: dict):
    """Both augmentation layers in the model's order: a function of a batch or of one photo."""
    flip, rotation = augmentation_layers(settings)
    return lambda x, training: rotation(flip(x, training=training), training=training)


def train_dataset(store, labels: np.ndarray, arm: str, settings: dict, batch_size: int,
                  seed: int) -> tf.data.Dataset:
    data = batches(store, labels, batch_size=batch_size, shuffle=True, seed=seed)
    if arm in ("model", "none"):
        return data
    augment = augmentation(settings)
    if arm == "pipeline":
        data = data.map(lambda x, y: (augment(x, training=True), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    else:
        data = (data.unbatch()
                .map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size))
    return data.prefetch(tf.data.AUTOTUNE)


def run_arm(params: dict, name: str, arm: str, precision: str, store, labels, epochs: int,
            seed: int, deterministic: bool = True) -> list[float]:
    """Seconds of each epoch of M2's training in one placement and precision.

    `deterministic` trains as the train stage does, with TensorFlow's op determinism, under
    which tf.data runs a map with stateful ops (Keras' random layers) serially and without
    prefetch; without it tf.data maps in parallel and prefetches, and the run is seeded but
    not repeatable.
    """
    job = training_job(params, name)
    settings = dict(job.model.settings)
    if deterministic:
        set_determinism(seed)
    else:
        keras.utils.set_random_seed(seed)
    build = dict(settings)
    if arm != "model":
        build.update(flip="none", rotation=0.0)
    model = ARCHITECTURES[job.model.arch](job.input_shape, **build)
    model = compile_model(with_precision(model, precision), job.optimizer)
    data = train_dataset(store, labels, arm, settings, job.config.batch_size, seed)
    clock = EpochClock()
    model.fit(data, epochs=epochs, callbacks=[clock], verbose=0)
    return clock.seconds


def augmentation_alone(settings: dict, store, batch_size: int, rounds: int = 20) -> dict:
    """Milliseconds to augment one batch: flip and rotation as one batched op each, each
    alone, and both photo by photo."""
    flip, rotation = augmentation_layers(settings)
    augment = augmentation(settings)
    batch = tf.cast(store.take(np.arange(batch_size)), tf.float32)
    functions = {
        "batched_ms": lambda x: augment(x, training=True),
        "flip_only_ms": lambda x: flip(x, training=True),
        "rotation_only_ms": lambda x: rotation(x, training=True),
        "per_image_ms": lambda x: tf.map_fn(lambda i: augment(i, training=True), x),
    }
    results = {}
    for label, function in functions.items():
        compiled = tf.function(function)
        compiled(batch)  # trace
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            compiled(batch).numpy()
            times.append(time.perf_counter() - started)
        results[label] = round(1000 * min(times), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="The data set zip, or its folder.")
    parser.add_argument("--model", default="m2_augment", help="A zoo entry with flip and rotation.")
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per run (first is warm-up).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default=None, help="Also this policy, e.g. mixed_bfloat16.")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
    parser.add_argument("--nondeterministic", action="store_true",
                        help="Without op determinism, so tf.data maps in parallel and prefetches.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    params = load_params(ROOT / "params.yaml")
    job = training_job(params, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        images, manifest = photos_and_split(args.data, Path(tmp))
        rows = manifest[manifest["split"] == "train"]
        store = decoded_images(rows, images, image_size=job.config.image_size)
        labels = rows["label_index"].to_numpy()

        settings = dict(job.model.settings)
        results: dict = {"model": args.model, "train_photos": len(rows),
                         "op_determinism": not args.nondeterministic,
                         "augmentation_alone": augmentation_alone(settings, store,
                                                                  job.config.batch_size)}
        print(f"augmentation alone, one batch of {job.config.batch_size}: "
              f"{results['augmentation_alone']}", flush=True)
        precisions = ["float32"] + ([args.precision] if args.precision else [])
        runs: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            order = [(arm, p) for p in precisions for arm in args.arms]
            shift = repeat % len(order)
            for arm, precision in order[shift:] + order[:shift]:
                seconds = run_arm(params, args.model, arm, precision, store, labels, args.epochs,
                                  seed=42 + repeat, deterministic=not args.nondeterministic)
                runs.setdefault(f"{arm} {precision}", []).extend(seconds[1:])
                print(f"  {arm} {precision}: epochs {', '.join(f'{s:.1f}' for s in seconds)} s",
                      file=sys.stderr, flush=True)
    table = []
    for precision in precisions:
        base = min(runs.get(f"model {precision}", [float("nan")]))
        for arm in args.arms:
            fastest = min(runs[f"{arm} {precision}"])
            median = float(np.median(runs[f"{arm} {precision}"]))
            table.append({"arm": arm, "precision": precision, "fastest_s": round(fastest, 2),
                          "median_s": round(median, 2), "speed_vs_model": round(base / fastest, 2)})
            print(f"{arm:10} {precision:15} fastest {fastest:6.2f} s  median {median:6.2f} s  "
                  f"{base / fastest:.2f}x the in-model placement")
    results["epochs"] = table
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
