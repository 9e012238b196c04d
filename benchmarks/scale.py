"""Benchmark: how time, memory and disk grow with the number of photos.

For each collection size (3,000, 25,000 and 100,000 photos by default) it makes a synthetic
collection of JPEGs of varied sizes (flat, labelled by file name, the Kaggle layout), then
reports:

- split: the split stage's checks and near-duplicate search (`build_manifest`), photos/s;
- cache build: decoding every photo at 160 px into the disk cache, photos/s;
- for a training process, from memory and from the disk cache (each its own process):
  its peak resident memory and the seconds per epoch per 1,000 photos, M1 as params.yaml
  says (160 px), timed
  over --steps batches of a second epoch (a fixed number of batches, drawn at random from
  the whole collection: a full epoch of 70,000 photos would take minutes and say nothing
  more);
- disk used by the photos and by the cache.

Targets (issue #28): the disk-cache process's peak memory at 100,000 photos within
train.memory_budget_mb + 1.5 GB; an epoch from the disk cache at most 1.25x the in-memory one
per photo; split and cache build time linear in the photos (steady photos/s). The table is
printed and written to benchmarks/scale.json; figures, never asserts.

    python benchmarks/scale.py                      # 3,000, 25,000, 100,000
    python benchmarks/scale.py --sizes 1000 5000 --workdir /tmp/scale

The photos are kept in --workdir between runs (made once per size); the cache is rebuilt.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from catsdogs.data.parallel import ordered_map  # noqa: E402
from catsdogs.data.split import build_manifest  # noqa: E402
from catsdogs.zoo.settings import TrainConfig  # noqa: E402

IMAGE_SIZE = 160


def synthetic_photo(index: int, folder: str) -> int:
    """Write one JPEG of a varied size (a smooth field with a few shapes: a photo's detail,
    not noise's; no two alike); return its bytes."""
    rng = np.random.default_rng(index)
    label = "cat" if index % 2 == 0 else "dog"
    width, height = int(rng.integers(180, 640)), int(rng.integers(180, 640))
    field = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        box = (x0, y0, x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    path = Path(folder) / f"{label}.{index}.jpg"
    image.save(path, quality=85)
    return path.stat().st_size


def make_collection(folder: Path, count: int) -> None:
    """`count` photos in `folder`, made once (a finished collection has a marker file)."""
    done = folder / ".complete"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ordered_map(functools.partial(synthetic_photo, folder=str(folder)), range(count),
                label=f"making {count} photos")
    done.touch()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


TRAINING = r"""
import json, resource, sys, time
from pathlib import Path
import pandas as pd
from catsdogs.core.params import load_params
from catsdogs.data.input_pipeline import batches, decoded_images
from catsdogs.training.objective import compile_model
from catsdogs.training.strategy import set_determinism
from catsdogs.training.train import initial_model
from catsdogs.zoo.entries import training_job

manifest, images, cache, steps, params = sys.argv[1:6]
rows = pd.read_csv(manifest)
rows = rows[rows["split"] == "train"]
params = load_params(params)
job = training_job(params, next(iter(params["models"])))  # M1
set_determinism(0)
started = time.perf_counter()
store = decoded_images(rows, Path(images), image_size=job.config.image_size,
                       cache_dir=Path(cache) if cache != "-" else None)
load_s = time.perf_counter() - started
dataset = batches(store, rows["label_index"].to_numpy(), batch_size=32, shuffle=True, seed=0)
model = compile_model(initial_model(job, None), job.optimizer)
seconds = []
for _ in range(2):
    started = time.perf_counter()
    model.fit(dataset.take(int(steps)), epochs=1, verbose=0)
    seconds.append(time.perf_counter() - started)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"load_s": load_s, "epoch_s": seconds[-1], "photos": min(int(steps) * 32, len(rows)),
                  "peak_mb": peak_kb / 1024}))
"""


def training_process(manifest: Path, images: Path, cache: Path | None, steps: int) -> dict:
    """Train M1 for `steps` batches in a fresh process; its figures."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", TRAINING, str(manifest), str(images), str(cache or "-"),
         str(steps), str(ROOT / "params.yaml")], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(count: int, workdir: Path, steps: int) -> dict:
    photos = workdir / f"photos_{count}"
    make_collection(photos, count)
    started = time.perf_counter()
    split = build_manifest(photos, validation_fraction=0.2, test_fraction=0.1)
    split_s = time.perf_counter() - started
    manifest = workdir / f"manifest_{count}.csv"
    split.manifest.to_csv(manifest, index=False)
    train_count = int((split.manifest["split"] == "train").sum())

    cache = workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    from catsdogs.data.input_pipeline import build_disk_cache, cache_key

    rows = split.manifest[split.manifest["split"] == "train"]
    started = time.perf_counter()
    build_disk_cache([photos / p for p in rows["path"]], IMAGE_SIZE,
                     cache / f"{cache_key(rows, IMAGE_SIZE)}.u8")
    build_s = time.perf_counter() - started
    cache_bytes = sum(p.stat().st_size for p in cache.glob("*.u8"))
    # The build leaves gigabytes of dirty pages; their writeback would be timed as the
    # disk arm's reads (it made the first run's 100,000-photo row 1.31x).
    os.sync()

    from_memory = training_process(manifest, photos, None, steps)
    from_disk = training_process(manifest, photos, cache, steps)
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "photos": count, "train_photos": train_count,
        "split_photos_per_s": count / split_s, "split_s": split_s,
        "cache_photos_per_s": train_count / build_s, "cache_s": build_s,
        "memory_peak_mb": from_memory["peak_mb"], "disk_peak_mb": from_disk["peak_mb"],
        "memory_s_per_1000": 1000 * from_memory["epoch_s"] / from_memory["photos"],
        "disk_s_per_1000": 1000 * from_disk["epoch_s"] / from_disk["photos"],
        "memory_load_s": from_memory["load_s"],
        "photos_mb": folder_bytes(photos) / 2**20, "cache_mb": cache_bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3_000, 25_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/catsdogs-scale"))
    parser.add_argument("--steps", type=int, default=60, help="Batches of 32 timed per epoch.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/scale.json")
    args = parser.parse_args()
    budget_mb = TrainConfig().memory_budget_mb
    rows = []
    header = (f"{'photos':>8} {'split/s':>8} {'cache/s':>8} {'peak MB mem':>11} {'peak MB disk':>12} "
              f"{'s/1000 mem':>10} {'s/1000 disk':>11} {'disk/mem':>8} {'photos MB':>9} {'cache MB':>8}")
    print(header)
    for count in args.sizes:
        row = measure(count, args.workdir, args.steps)
        rows.append(row)
        print(f"{row['photos']:>8} {row['split_photos_per_s']:>8.0f} {row['cache_photos_per_s']:>8.0f} "
              f"{row['memory_peak_mb']:>11.0f} {row['disk_peak_mb']:>12.0f} "
              f"{row['memory_s_per_1000']:>10.2f} {row['disk_s_per_1000']:>11.2f} "
              f"{row['disk_s_per_1000'] / row['memory_s_per_1000']:>8.2f} "
              f"{row['photos_mb']:>9.0f} {row['cache_mb']:>8.0f}", flush=True)
    largest = rows[-1]
    print(f"\ntargets at {largest['photos']} photos: disk-cache peak {largest['disk_peak_mb']:.0f} MB "
          f"(budget {budget_mb:.0f} + 1536 = {budget_mb + 1536:.0f} MB); disk/memory epoch "
          f"{largest['disk_s_per_1000'] / largest['memory_s_per_1000']:.2f}x (target 1.25x)")
    args.out.write_text(json.dumps({"image_size": IMAGE_SIZE, "steps": args.steps,
                                    "memory_budget_mb": budget_mb, "cpus": os.cpu_count(),
                                    "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
