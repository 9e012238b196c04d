"""Which fine-tuning settings make M5 better than its parent M4? Measured on validation only.

For each seed: trains the parent (a transfer model of the zoo) as params.yaml says, then
fine-tunes it once per candidate (a set of overrides of the fine-tune entry: learning rate,
optimizer, first unfrozen layer...). Prints, per candidate, the validation accuracy after
each epoch (so fewer epochs can be read off the same run) and its final value against the
parent's, per seed and as a mean over seeds; writes them as JSON. The test split is never
read: the choice is made on validation, and the test set is read once per final model.

    python benchmarks/finetune_sweep.py --data ../shared/data/cats_and_dogs_filtered.zip \
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 \
        --candidate '{}' --candidate '{"learning_rate": 3e-6}' --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import zipfile
from pathlib import Path

from catsdogs.core.params import load_params
from catsdogs.data.split import build_manifest
from catsdogs.models.model_file import MODEL_FILE
from catsdogs.training.train import train_model
from catsdogs.zoo.entries import training_job

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="The data set zip, or its extracted folder.")
    parser.add_argument("--weights", default="imagenet", help="Weights of the transfer models.")
    parser.add_argument("--finetune", default="m5_finetune", help="The fine-tune entry to vary.")
    parser.add_argument("--candidate", action="append", default=[],
                        help="JSON overrides of the fine-tune entry; give several. '{}' is as committed.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/finetune_sweep.json"))
    parser.add_argument("--parents", type=Path, default=None,
                        help="Keep the trained parents here and reuse them in later sweeps "
                             "(a parent is reused only if its params are unchanged).")
    args = parser.parse_args()

    params = load_params(ROOT / "params.yaml")
    for entry in params["models"].values():
        if "weights" in entry:
            entry["weights"] = args.weights
    parent = params["finetune"][args.finetune]["init_from"]
    candidates = [json.loads(c) for c in args.candidate] or [{}]
    results = {"parent": parent, "finetune": args.finetune, "seeds": args.seeds,
               "candidates": [{"overrides": c, "runs": []} for c in candidates], "parent_runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        images = args.data
        if zipfile.is_zipfile(args.data):
            images = Path(tmp) / "data"
            with zipfile.ZipFile(args.data) as zf:
                zf.extractall(images)
        manifest = build_manifest(images, test_every=5, strict=False).manifest
        for seed in args.seeds:
            run_params = copy.deepcopy(params)
            run_params["seed"] = seed
            folder = (args.parents or Path(tmp)) / f"{parent}-{seed}"
            parent_val = trained_parent(run_params, parent, manifest, images, folder)
            results["parent_runs"].append({"seed": seed, "val_accuracy": parent_val})
            print(f"{parent} seed {seed}: val {parent_val:.4f}", file=sys.stderr, flush=True)
            for candidate, record in zip(candidates, results["candidates"], strict=True):
                tuned = copy.deepcopy(run_params)
                tuned["finetune"][args.finetune].update(candidate)
                _, fit = train_model(training_job(tuned, args.finetune), manifest, images,
                                     init_from=folder)
                curve = [round(float(v), 4) for v in fit.history["val_accuracy"]]
                record["runs"].append({"seed": seed, "val_accuracy": curve[-1], "curve": curve,
                                       "over_parent": round(curve[-1] - parent_val, 4)})
                print(f"  {candidate}: val per epoch {curve} (parent {parent_val:.4f})",
                      file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # after every seed
    parent_mean = sum(r["val_accuracy"] for r in results["parent_runs"]) / len(args.seeds)
    print(f"{parent}: mean val {parent_mean:.4f} over seeds {args.seeds}")
    for record in results["candidates"]:
        finals = [r["val_accuracy"] for r in record["runs"]]
        record["mean_val_accuracy"] = round(sum(finals) / len(finals), 4)
        record["beats_parent_every_seed"] = all(r["over_parent"] > 0 for r in record["runs"])
        print(f"{json.dumps(record['overrides'])}: mean val {record['mean_val_accuracy']:.4f} "
              f"(parent {parent_mean:.4f}); per seed {finals}; beats the parent on every seed: "
              f"{record['beats_parent_every_seed']}")
    results["parent_mean_val_accuracy"] = round(parent_mean, 4)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


def trained_parent(params: dict, parent: str, manifest, images: Path, folder: Path) -> float:
    """Train `parent` as `params` say into `folder`, or reuse one trained there with the same
    params; its final validation accuracy."""
    record = folder / "parent.json"
    recipe = {"seed": params["seed"], "train": params["train"], "entry": params["models"][parent]}
    if record.is_file() and (folder / MODEL_FILE).is_file():
        kept = json.loads(record.read_text())
        if kept["recipe"] == recipe:
            print(f"{parent} seed {params['seed']}: reusing {folder}", file=sys.stderr, flush=True)
            return kept["val_accuracy"]
    model, fit = train_model(training_job(params, parent), manifest, images)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    val = float(fit.history["val_accuracy"].iloc[-1])
    record.write_text(json.dumps({"recipe": recipe, "val_accuracy": val}, indent=2) + "\n")
    return val


if __name__ == "__main__":
    main()
