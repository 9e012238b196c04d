"""DVC stage `evaluate@<model>`: score one trained model on the test split.

Reads params.yaml (`evaluate`, and `train`'s memory_budget_mb and cache_dir: where decoded
photos are kept), the model folder written by `train@<model>`, the manifest and the images it names;
only the manifest's `test` rows are used, at the size the model takes. Writes the test
metrics to --metrics, one row per test image to --predictions (a DVC confusion plot), and
the confusion matrix, a 3x3 grid of predictions and a grid of mistakes to --figures. Logs
them into the model's training run, attached to its LoggedModel, without reopening the run.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.atomic import write_csv, write_json
from catsdogs.core.params import load_params, read_section
from catsdogs.data.images import read_images
from catsdogs.data.input_pipeline import disk_cache_for, image_dataset
from catsdogs.data.manifest import LABELS, read_manifest, split_rows
from catsdogs.evaluation.scores import (
    EvaluateConfig,
    classification_metrics,
    predict_logits,
    predictions_table,
)
from catsdogs.models.model_file import input_size, load_model_file
from catsdogs.reports import figures
from catsdogs.tracking import logged_models, runs, store
from catsdogs.zoo.settings import TrainConfig


@click.command()
@params_option
@click.option("--model", "name", required=True, help="Zoo entry name (for titles and MLflow).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder written by train@<model>.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              default="data/split/manifest.csv", show_default=True)
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default="data/raw",
              show_default=True, help="Folder the manifest's paths are relative to.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Test metrics JSON.")
@click.option("--predictions", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Per-image predictions CSV.")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for the evaluation figures (replaced).")
@fails_clearly
def main(params_path: str, name: str, model_dir: Path, manifest: Path, images: Path,
         metrics_path: Path, predictions: Path, figures_dir: Path) -> None:
    """Evaluate the model named by --model on the manifest's test split: accuracy, loss, precision, recall,
    F1, ROC AUC and the confusion matrix."""
    setup_logging()
    params = load_params(params_path)
    config = read_section(params, "evaluate", EvaluateConfig)
    model = load_model_file(model_dir)
    size = input_size(model)
    rows = read_manifest(manifest)
    store.connect()

    test = split_rows(rows, "test")
    # Past the memory budget the test photos, too, are read from the disk cache.
    storage = read_section(params, "train", TrainConfig)
    dataset = image_dataset(test, images, image_size=size, batch_size=config.batch_size,
                            shuffle=False, seed=0,
                            cache_dir=disk_cache_for(len(test), size, storage.memory_budget_mb,
                                                     storage.cache_dir))
    logits = predict_logits(model, dataset)
    metrics = classification_metrics(test["label_index"].to_numpy(), logits)
    table = predictions_table(list(test["path"]), test["label_index"].to_numpy(), logits)
    write_csv(predictions, table)
    write_json(metrics_path, metrics)
    figures.evaluation_figures(
        metrics, table, lambda paths: read_images([images / p for p in paths], size, max_pixels=None),
        LABELS, figures_dir, name,
    )

    run_id, model_id = logged_models.read_ids(model_dir)
    stage = runs.context_tags().get("dvc_stage")
    logged_models.log_evaluation(
        run_id, model_id, metrics, name=name, test=runs.manifest_dataset(rows, "test", manifest),
        artifacts={"evaluation": [predictions], "figures": sorted(figures_dir.glob("*.png"))},
        tags={"dvc_eval_stage": stage} if stage else {},
    )
    click.echo(f"{name}: test accuracy {metrics['accuracy']:.4f} on {metrics['count']} images.",
               err=True)


if __name__ == "__main__":
    main()
