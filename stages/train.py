"""DVC stage `train@<model>` (and `finetune@<model>`): train one model of the zoo.

Reads params.yaml (`seed`, `train`, and the model's entry in `models` or `finetune`), the
manifest and the images it names. Writes the model and its MLflow run id to --out, the
final and best validation numbers to --metrics, the per-epoch history to --history, and the
curves (plus augmentation demonstrations, for models that augment) to --figures. Logs all of
it to the model's MLflow run.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import click

from catsdogs import figures, tracking
from catsdogs.atomic import atomic_dir, write_csv, write_json
from catsdogs.config import ConfigError, from_mapping, load_params, section
from catsdogs.data import load_images, read_manifest, split_rows
from catsdogs.models import (
    MODEL_FILE, augmentation_examples, count_params, finetune_spec, model_spec, unfreeze_top,
    with_probability,
)
from catsdogs.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.training import TrainConfig, choose_strategy, is_chief, train


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
              help="Model folder to write (replaced): model.keras and the MLflow run id.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Training metrics JSON.")
@click.option("--history", "history_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Per-epoch history CSV (a DVC plot).")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the curves and augmentation figures (replaced).")
@fails_clearly(tracking.TrackingError)
def main(params_path: str, name: str, manifest: Path, images: Path, init_from: Path | None,
         out: Path, metrics_path: Path, history_path: Path, figures_dir: Path) -> None:
    """Train the zoo model NAME on the manifest's train split, validating on its
    validation split, and save it with its metrics, curves and MLflow run."""
    setup_logging()
    params = load_params(params_path)
    config = from_mapping(TrainConfig, section(params, "train"), "train")
    seed = params.get("seed", 0)
    if not isinstance(seed, int):
        raise click.BadParameter(f"seed must be an integer, got {seed!r}", param_hint="params seed")
    input_shape = (config.image_size, config.image_size, 3)
    # First TensorFlow work in the process: multi-worker collectives must be set up first.
    strategy = choose_strategy(config.strategy)

    import keras

    if name in params.get("finetune", {}):
        spec = finetune_spec(params["finetune"], name)
        if init_from is None:
            raise click.UsageError(f"'{name}' fine-tunes '{spec.init_from}': pass --init-from")
        source = init_from / MODEL_FILE
        if not source.is_file():
            raise ConfigError(f"'{source}' does not exist; train '{spec.init_from}' first")
        training, entry = spec.training, {"finetune": params["finetune"][name]}
        def build() -> keras.Model:
            return unfreeze_top(keras.models.load_model(source), spec.fine_tune_at)
    else:
        spec = model_spec(section(params, "models"), name)
        training, entry = spec.training, {"model": params["models"][name]}
        def build() -> keras.Model:
            return spec.build(input_shape)

    rows = read_manifest(manifest)
    if not is_chief(strategy):
        # A non-chief worker trains its share of every batch; the chief writes and logs.
        train(build, training, rows, images, config, seed=seed, strategy=strategy)
        click.echo(f"{name}: worker done; the chief writes the outputs.", err=True)
        return
    tracking.connect()
    run_params = {
        "model_name": name, **entry, "train": params["train"], "seed": seed,
        "data": {"manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
                 "train_images": int((rows["split"] == "train").sum())},
    }
    with tracking.run(name, tags=tracking.context_tags()) as run_id:
        tracking.log_params(run_params)
        model, result = train(build, training, rows, images, config, seed=seed,
                              epoch_hooks=[tracking.log_epoch], strategy=strategy)
        summary = {**result.summary(), "params": count_params(model)}

        example_path = images / split_rows(rows, "validation")["path"].iloc[0]
        example = load_images([example_path], config.image_size).numpy()
        with atomic_dir(figures_dir) as tmp:
            figures.training_curves(result.history, tmp / "curves.png", f"{name}: training curves")
            for layer, draws in augmentation_examples(model, example[0]).items():
                figures.image_grid(draws, [layer.replace("_", " ")] * len(draws),
                                   tmp / f"augment_{layer.removeprefix('random_')}.png")
        with atomic_dir(out) as tmp:
            model.save(tmp / MODEL_FILE)
            (tmp / tracking.RUN_ID_FILE).write_text(run_id + "\n", encoding="utf-8")
        write_csv(history_path, result.history)
        write_json(metrics_path, summary)

        text = io.StringIO()
        model.summary(print_fn=lambda line, **_: text.write(line + "\n"))
        # The final loss/accuracy values are the curves' last points, logged per epoch.
        curves = {"loss", "accuracy", "val_loss", "val_accuracy"}
        tracking.log_metrics({k: v for k, v in summary.items() if k not in curves})
        tracking.log_text(text.getvalue(), "model_summary.txt")
        tracking.log_artifact(history_path, "history")
        for png in sorted(figures_dir.glob("*.png")):
            tracking.log_artifact(png, "figures")
        tracking.log_keras_model(with_probability(model), example)
    click.echo(f"{name}: val_accuracy {summary['val_accuracy']:.4f} after {summary['epochs']} "
               f"epochs, {summary['images_per_second']:.0f} images/s.", err=True)


if __name__ == "__main__":
    main()
