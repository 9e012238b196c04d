"""DVC stage `train@<model>` (and `finetune@<model>`): train one model of the zoo.

Reads params.yaml (`seed`, `train`, and the model's entry in `models` or `finetune`), the
manifest and the images it names. Writes the model with its MLflow run and LoggedModel ids
to --out, the final and best training and validation numbers to --metrics (metrics only),
the per-epoch history to --history, the curves (plus augmentation demonstrations, for
models that augment) to --figures, and into the model folder how it was trained (settings,
size, timings: `training.json`) and the machine it trained on (CPU, oneDNN's instruction
set, cores, versions: `catsdogs.core.machine`). Logs all of it to the model's
MLflow run (the machine as `catsdogs.machine.*` tags); the run ends when training does.
After each epoch it saves the training's state under .catsdogs/resume/ (`catsdogs.training.resume`);
a run after one that died goes on from there, and a run that succeeds removes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import replace
from pathlib import Path

import click

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.atomic import atomic_dir, write_csv, write_json
from catsdogs.core.machine import MACHINE_FILE, describe
from catsdogs.core.params import load_params
from catsdogs.data.images import read_image
from catsdogs.data.manifest import read_manifest, split_rows
from catsdogs.models.architectures import augmentation_examples, summary_text
from catsdogs.models.model_file import MODEL_FILE, with_probability
from catsdogs.reports import figures
from catsdogs.tracking import logged_models, runs, store
from catsdogs.training.fit import Resume
from catsdogs.training.history import EPOCH_METRICS, TRAINING_FILE
from catsdogs.training.strategy import choose_strategy, is_chief
from catsdogs.training.train import resume_state, train_model, training_record
from catsdogs.zoo.entries import training_job


@click.command()
@params_option
@click.option("--model", "name", required=True, help="Zoo entry in params.yaml models or finetune.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              default="data/split/manifest.csv", show_default=True)
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default="data/raw",
              show_default=True, help="Folder the manifest's paths are relative to.")
@click.option("--init-from", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Trained model folder to fine-tune (required for finetune entries).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model folder to write (replaced): model.keras and the MLflow ids.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Training metrics JSON.")
@click.option("--history", "history_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Per-epoch history CSV (a DVC plot).")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the curves and augmentation figures (replaced).")
@fails_clearly
def main(params_path: str, name: str, manifest: Path, images: Path, init_from: Path | None,
         out: Path, metrics_path: Path, history_path: Path, figures_dir: Path) -> None:
    """Train the zoo model named by --model on the manifest's train split, validating on its
    validation split, and save it with its metrics, curves and MLflow run."""
    setup_logging()
    job = training_job(load_params(params_path), name)
    # First TensorFlow work in the process: multi-worker collectives must be set up first.
    strategy = choose_strategy(job.config.strategy)
    rows = read_manifest(manifest)
    if not is_chief(strategy):
        # A non-chief worker trains its share of every batch; the chief writes and logs.
        train_model(job, rows, images, init_from=init_from, strategy=strategy)
        click.echo(f"{name}: worker done; the chief writes the outputs.", err=True)
        return

    store.connect()
    record = {"model_name": name, ("finetune" if job.finetune else "model"): job.entry,
              "train": dataclasses.asdict(job.config), "seed": job.seed,
              "data": {"manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}}
    # Where the numbers were made: part of the result (see catsdogs.core.machine).
    machine = describe()
    with resume_state(job, strategy, manifest, rows, images, init_from,
                      stage=Path(__file__), machine_fingerprint=machine["fingerprint"]) as state:
        # An earlier run of this training that died saved its last whole epoch: go on from
        # there, in a new MLflow run that holds every epoch and names the dead one.
        saved = state.load() if state else None
        tags = {**runs.context_tags(), **runs.machine_tags(machine)}
        if saved:
            tags.update(runs.resumed_tags(saved.run_id, saved.epoch))
        with runs.run(name, tags=tags) as run_id:
            runs.log_params(record)
            runs.log_datasets(rows, manifest, ["train", "validation"])
            if saved:
                for row in saved.history.to_dict("records"):
                    runs.log_epoch(int(row["epoch"]), {k: row[k] for k in EPOCH_METRICS})
            resume = state and Resume(saved, lambda s: state.save(replace(s, run_id=run_id)))
            model, result = train_model(job, rows, images, init_from=init_from,
                                        strategy=strategy, epoch_hooks=[runs.log_epoch],
                                        resume=resume)
            metrics = result.metrics()
            how = training_record(job, model, result)
            example_path = images / split_rows(rows, "validation")["path"].iloc[0]
            example = read_image(example_path, job.config.image_size, max_pixels=None)[None]
            # The model goes to MLflow before any output is replaced: a tracking failure then
            # leaves last run's outputs whole, never a mix of old and new.
            # The final epoch's curves are linked to the LoggedModel; the rest are run metrics.
            runs.log_metrics({k: v for k, v in {**metrics, **how}.items()
                              if k not in EPOCH_METRICS})
            runs.log_text(summary_text(model), "model_summary.txt")
            model_id = logged_models.log_keras_model(with_probability(model), name=name,
                                                     input_example=example.astype("float32"),
                                                     step=how["epochs"])
            figures.training_figures(result.history, augmentation_examples(model, example[0]),
                                     figures_dir, name)
            write_csv(history_path, result.history)
            with atomic_dir(out) as tmp:
                model.save(tmp / MODEL_FILE)
                logged_models.write_ids(tmp, run_id, model_id)
                write_json(tmp / MACHINE_FILE, machine)
                write_json(tmp / TRAINING_FILE, how)
            write_json(metrics_path, metrics)
            runs.log_artifact(history_path, "history")
            for png in sorted(figures_dir.glob("*.png")):
                runs.log_artifact(png, "figures")
        if state:  # done: the outputs are in place
            state.clear()
    click.echo(f"{name}: val_accuracy {metrics['val_accuracy']:.4f} after {how['epochs']} "
               f"epochs, {how['images_per_second']:.0f} images/s.", err=True)


if __name__ == "__main__":
    main()
