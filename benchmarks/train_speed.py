"""Benchmark: catsdogs' training input pipeline against the tutorial's, and time to accuracy.

For each model, trains (a) with catsdogs' pipeline (decode once, cache, seeded shuffle,
prefetch) and its fit(), (b) with a plain tutorial-style pipeline (`image_dataset_from_directory`
+ prefetch: every JPEG decoded every epoch) and model.fit, and (c) with catsdogs' fit() on
batches already in memory, the model's floor. Same model, batch size and epochs; each repeat
has its own seed and a rotated order, so machine noise hits all three. Prints the fastest
steady epoch's seconds, training images per second, the speed ratio, the ceiling (tutorial
over floor) and mean final validation accuracy; writes the table as JSON.
Then: how long M4 takes to reach 0.96 and 0.97 validation accuracy; how fast
`catsdogs predict` classifies a folder of photos and its peak memory as the folder grows;
and, given a pipeline repository, how long a no-op `dvc repro` takes.

    python benchmarks/train_speed.py --data ../shared/data/cats_and_dogs_filtered.zip \
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5

Figures are printed, never asserted: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from catsdogs.config import load_params
from catsdogs.data import image_dataset, split_rows
from catsdogs.models import compile_model, model_spec
from catsdogs.split import build_manifest, find_dataset_root
from catsdogs.training import fit, set_determinism

ROOT = Path(__file__).resolve().parents[1]
# Runs `catsdogs predict` and reports the process's own peak memory on stderr at exit.
# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked
# from this (large) benchmark process would report the benchmark's size, not its own.
PREDICT_WITH_PEAK = (
    "import atexit, re, sys\n"
    "atexit.register(lambda: print('PEAK_RSS_KB', re.search(r'VmHWM:\\s+(\\d+)', "
    "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
    "from catsdogs.cli import main\n"
    "main(sys.argv[1:])\n"
)


class EpochClock(keras.callbacks.Callback):
    """Per-epoch seconds, and when (since training start) val_accuracy first hits targets."""

    def __init__(self, targets: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.reached: dict[float, float] = {}
        self.targets = targets

    def on_train_begin(self, logs=None) -> None:
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self.epoch_start)
        for target in self.targets:
            if target not in self.reached and (logs or {}).get("val_accuracy", 0) >= target:
                self.reached[target] = now - self.start


def tutorial_datasets(root: Path, image_size: int, batch_size: int, seed: int):
    """The tutorial's input pipeline: decode from the folders every epoch, prefetch."""
    common = {"image_size": (image_size, image_size), "batch_size": batch_size,
              "label_mode": "binary", "seed": seed, "verbose": False}
    train = keras.utils.image_dataset_from_directory(root / "train", shuffle=True, **common)
    val = keras.utils.image_dataset_from_directory(root / "validation", shuffle=False, **common)
    return train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)


def catsdogs_datasets(images: Path, manifest: pd.DataFrame, image_size: int, batch_size: int, seed: int):
    common = {"image_size": image_size, "batch_size": batch_size, "seed": seed}
    return (image_dataset(split_rows(manifest, "train"), images, shuffle=True, **common),
            image_dataset(split_rows(manifest, "validation"), images, shuffle=False, **common))


def train_once(name: str, models: dict, make_datasets, epochs: int, image_size: int, seed: int,
               *, own_fit: bool, targets: tuple[float, ...] = ()) -> dict:
    """One timed training run: catsdogs' fit() (own_fit), or a plain model.fit."""
    set_determinism(seed)  # before the datasets: their shuffle seeds derive from it
    train, val = make_datasets()
    spec = model_spec(models, name)
    model = compile_model(spec.build((image_size, image_size, 3)), spec.training)
    if own_fit:
        reached: dict[float, float] = {}
        started = time.perf_counter()

        def note_targets(epoch: int, logs: dict) -> None:
            for target in targets:
                if target not in reached and logs["val_accuracy"] >= target:
                    reached[target] = time.perf_counter() - started

        result = fit(model, train, val, epochs=epochs, train_images=0, epoch_hooks=[note_targets])
        seconds = list(result.history["seconds"])
        val_accuracy = float(result.history["val_accuracy"].iloc[-1])
    else:
        clock = EpochClock(targets)
        history = model.fit(train, validation_data=val, epochs=epochs, callbacks=[clock], verbose=0,
                            shuffle=False)  # the dataset shuffles itself
        seconds, reached = clock.seconds, clock.reached
        val_accuracy = history.history["val_accuracy"][-1]
    return {"steady_epoch_seconds": seconds[1:] or seconds, "first_epoch_seconds": seconds[0],
            "val_accuracy": val_accuracy, "reached": reached}


def in_memory(datasets: tuple) -> tuple:
    """The datasets with every float32 batch already in memory: no input pipeline left.

    Training on these measures the model's own floor; no input pipeline can beat it.
    """
    materialized = tuple(dataset.cache().prefetch(tf.data.AUTOTUNE) for dataset in datasets)
    for dataset in materialized:
        for _ in dataset:  # fill the cache before the clock starts
            pass
    return materialized


PIPELINES = ("catsdogs", "tutorial", "in_memory")


def bench_training(args, models: dict, images: Path, root: Path, manifest: pd.DataFrame) -> list[dict]:
    train_images = int((manifest["split"] == "train").sum())

    def make_datasets(pipeline: str, seed: int):
        if pipeline == "tutorial":
            return tutorial_datasets(root, args.image_size, args.batch_size, seed)
        own = catsdogs_datasets(images, manifest, args.image_size, args.batch_size, seed)
        return in_memory(own) if pipeline == "in_memory" else own

    rows = []
    for name in args.models:
        runs: dict[str, list[dict]] = {pipeline: [] for pipeline in PIPELINES}
        for repeat in range(args.repeats):
            # Each repeat its own seed: one seed's accuracy after a few epochs is mostly luck.
            seed = args.seed + repeat
            shift = repeat % len(PIPELINES)  # rotate the order so noise hits every pipeline
            for pipeline in PIPELINES[shift:] + PIPELINES[:shift]:
                result = train_once(name, models, lambda pipeline=pipeline, seed=seed: make_datasets(pipeline, seed),
                                    args.epochs, args.image_size, seed,
                                    own_fit=pipeline != "tutorial")
                runs[pipeline].append(result)
                print(f"  {name} {pipeline}: steady epochs "
                      f"{', '.join(f'{t:.1f}' for t in result['steady_epoch_seconds'])} s, "
                      f"val_accuracy {result['val_accuracy']:.4f}", file=sys.stderr, flush=True)
        row = {"model": name, "epochs": args.epochs}
        for pipeline, results in runs.items():
            # The fastest steady epoch of any repeat: the one least slowed by other load.
            seconds = min(t for r in results for t in r["steady_epoch_seconds"])
            row[f"{pipeline}_s_per_epoch"] = round(seconds, 2)
            row[f"{pipeline}_images_per_s"] = round(train_images / seconds, 1)
            accuracies = [r["val_accuracy"] for r in results]
            row[f"{pipeline}_val_accuracy"] = round(sum(accuracies) / len(accuracies), 4)
            row[f"{pipeline}_val_accuracy_range"] = [round(min(accuracies), 4), round(max(accuracies), 4)]
        row["speedup"] = round(row["tutorial_s_per_epoch"] / row["catsdogs_s_per_epoch"], 2)
        # The most any input pipeline could give: the tutorial's time over the model's floor.
        row["ceiling"] = round(row["tutorial_s_per_epoch"] / row["in_memory_s_per_epoch"], 2)
        rows.append(row)
    return rows


def bench_time_to_accuracy(args, models: dict, images: Path, manifest: pd.DataFrame) -> dict:
    targets = (0.96, 0.97)
    def make_datasets():
        return catsdogs_datasets(images, manifest, args.image_size, args.batch_size, args.seed)

    result = train_once("m4_transfer", models, make_datasets, args.tta_epochs, args.image_size,
                        args.seed, own_fit=True, targets=targets)
    return {f"m4_seconds_to_{t}": (round(result["reached"][t], 1) if t in result["reached"] else None)
            for t in targets} | {"m4_epochs_run": args.tta_epochs,
                                 "m4_final_val_accuracy": round(result["val_accuracy"], 4)}


def bench_predict(args, models: dict, root: Path, manifest: pd.DataFrame) -> list[dict]:
    """Time `catsdogs predict` in a fresh process on growing folders; peak memory of each."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = sorted((root / "train").rglob("*.jpg"))
        for name in ("m1_cnn", "m4_transfer"):
            spec = model_spec(models, name)
            model_file = tmp / f"{name}.keras"
            spec.build((args.image_size, args.image_size, 3)).save(model_file)
            for count in args.predict_sizes:
                folder = tmp / f"photos_{count}"
                if not folder.exists():
                    folder.mkdir()
                    for i in range(count):
                        src = photos[i % len(photos)]
                        os.link(src, folder / f"{i:05d}_{src.name}")
                started = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", PREDICT_WITH_PEAK, "predict", str(folder),
                                       "--model", str(model_file), "--format", "csv"],
                                      capture_output=True, text=True)
                seconds = time.perf_counter() - started
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-2000:])
                peak_kb = int(proc.stderr.split("PEAK_RSS_KB")[-1].split()[0])
                lines = proc.stdout.count("\n") - 1
                rows.append({"model": name, "photos": lines, "seconds": round(seconds, 1),
                             "photos_per_s": round(lines / seconds, 1),
                             "peak_rss_mb": round(peak_kb / 1024)})
                print(f"  predict {name} {lines} photos: {lines / seconds:.0f}/s", file=sys.stderr, flush=True)
    return rows


def bench_noop_repro(repo: Path) -> dict:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if "Running stage" in out.stdout:
            raise RuntimeError(f"{repo}: dvc repro was not a no-op:\n{out.stdout[-2000:]}")
    return {"noop_dvc_repro_seconds": round(min(times), 2)}


def targets(results: dict) -> list[str]:
    """The issue's targets beside what was measured: figures, not verdicts on the code."""
    lines = []
    for row in results.get("training", []):
        wanted = 1.5 if row["model"] == "m4_transfer" else 2.0
        met = "met" if row["speedup"] >= wanted else "not met"
        lines.append(f"{row['model']}: {row['speedup']:.2f}x the tutorial pipeline "
                     f"(target {wanted}x: {met}; with no input pipeline at all, the model's own "
                     f"floor, {row['ceiling']:.2f}x)")
    seconds = results.get("time_to_accuracy", {}).get("m4_seconds_to_0.96")
    if "time_to_accuracy" in results:
        met = "met" if seconds is not None and seconds <= 120 else "not met"
        lines.append(f"m4_transfer to 0.96 validation accuracy: {seconds} s (target 120 s: {met})")
    m4 = [r for r in results.get("predict", []) if r["model"] == "m4_transfer"]
    if m4:
        best = max(r["photos_per_s"] for r in m4)
        peaks = sorted({r["peak_rss_mb"] for r in m4})
        lines.append(f"predict with m4_transfer: {best} photos/s (target 40: "
                     f"{'met' if best >= 40 else 'not met'}); peak memory {peaks} MB across "
                     f"{[r['photos'] for r in m4]} photos")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="The data set zip, or its extracted folder.")
    parser.add_argument("--weights", default="imagenet", help="MobileNetV2 no-top weights for m4.")
    parser.add_argument("--models", nargs="*", default=["m1_cnn", "m2_augment", "m3_preprocess", "m4_transfer"])
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per timed run (first is warm-up).")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Runs per pipeline, each with its own seed (seed, seed + 1, ...), order rotated.")
    parser.add_argument("--tta-epochs", type=int, default=8, help="M4 epochs for time to accuracy; 0 skips.")
    parser.add_argument("--predict-sizes", type=int, nargs="*", default=[500, 2000, 8000])
    parser.add_argument("--noop-repro", type=Path, default=None, help="A pipeline repo, all cached.")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args()

    models = dict(load_params(ROOT / "params.yaml")["models"])
    models["m4_transfer"] = {**models["m4_transfer"], "weights": args.weights}
    with tempfile.TemporaryDirectory() as tmp:
        images = args.data
        if zipfile.is_zipfile(args.data):
            images = Path(tmp)
            with zipfile.ZipFile(args.data) as zf:
                zf.extractall(images)
        root = find_dataset_root(images)
        manifest = build_manifest(images, test_every=5, strict=False).manifest
        results: dict = {"machine": {"cpus": os.cpu_count(), "tensorflow": tf.__version__}}
        if args.models:
            results["training"] = bench_training(args, models, images, root, manifest)
            table = pd.DataFrame(results["training"])
            print(table[[c for c in table.columns if not c.endswith(("_images_per_s", "_range"))]]
                  .to_string(index=False))
        if args.tta_epochs:
            results["time_to_accuracy"] = bench_time_to_accuracy(args, models, images, manifest)
            print(json.dumps(results["time_to_accuracy"]))
        if args.predict_sizes:
            results["predict"] = bench_predict(args, models, root, manifest)
            print(pd.DataFrame(results["predict"]).to_string(index=False))
    if args.noop_repro:
        results["repro"] = bench_noop_repro(args.noop_repro)
        print(json.dumps(results["repro"]))
    results["targets"] = targets(results)
    for line in results["targets"]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
