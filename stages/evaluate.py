"""DVC stage `evaluate@<model>`: score one trained model on the test split.

Reads the model folder written by `train@<model>`, the manifest and the images it names;
only the manifest's `test` rows are used. Writes the test metrics to --metrics, one row per
test image to --predictions (a DVC confusion plot), and the confusion matrix, a 3x3 grid of
predictions and a grid of mistakes to --figures. Logs them into the model's training run.
"""

from __future__ import annotations

from pathlib import Path

import click

from catsdogs import figures, tracking
from catsdogs.atomic import atomic_dir, write_csv, write_json
from catsdogs.config import ConfigError, load_params, section
from catsdogs.data import image_dataset, load_images, read_manifest, split_rows
from catsdogs.evaluation import classification_metrics, predict_logits, predictions_table
from catsdogs.models import MODEL_FILE
from catsdogs.split import LABELS
from catsdogs.stage_support import fails_clearly, params_option, setup_logging

GRID = 9


def _grid(table, images: Path, image_size: int, path: Path, title: str) -> None:
    shown = table.head(GRID)
    pictures = list(load_images([images / p for p in shown["path"]], image_size).numpy())
    titles = [f"{r.predicted} ({r.probability_dog:.2f} dog)\ntrue: {r.actual}" for r in shown.itertuples()]
    colors = ["green" if r.predicted == r.actual else "red" for r in shown.itertuples()]
    figures.image_grid(pictures, titles, path, colors=colors, suptitle=title)


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
@fails_clearly(tracking.TrackingError)
def main(params_path: str, name: str, model_dir: Path, manifest: Path, images: Path,
         metrics_path: Path, predictions: Path, figures_dir: Path) -> None:
    """Evaluate model NAME on the manifest's test split: accuracy, loss, precision, recall,
    F1, ROC AUC and the confusion matrix."""
    setup_logging()
    params = load_params(params_path)
    image_size = section(params, "train")["image_size"]
    batch_size = section(params, "evaluate").get("batch_size", 64)
    model_file = model_dir / MODEL_FILE
    if not model_file.is_file():
        raise ConfigError(f"'{model_file}' does not exist; run train for '{name}' first")
    run_id_file = model_dir / tracking.RUN_ID_FILE
    run_id = run_id_file.read_text().strip() if run_id_file.is_file() else None
    tracking.connect()

    import keras

    model = keras.models.load_model(model_file)
    test = split_rows(read_manifest(manifest), "test")
    dataset = image_dataset(test, images, image_size=image_size, batch_size=batch_size,
                            shuffle=False, seed=0)
    logits = predict_logits(model, dataset)
    metrics = classification_metrics(test["label_index"].to_numpy(), logits)
    table = predictions_table(list(test["path"]), test["label_index"].to_numpy(), logits)

    write_csv(predictions, table)
    write_json(metrics_path, metrics)
    with atomic_dir(figures_dir) as tmp:
        figures.confusion_matrix(metrics["confusion_matrix"], LABELS, tmp / "confusion_matrix.png",
                                 f"{name}: test accuracy {metrics['accuracy']:.3f}")
        # A spread of the test set, not just the first class: every n-th image.
        step = max(1, len(table) // GRID)
        _grid(table.iloc[::step], images, image_size, tmp / "predictions.png",
              f"{name}: test predictions")
        mistakes = table[table["predicted"] != table["actual"]]
        if len(mistakes):
            _grid(mistakes, images, image_size, tmp / "mistakes.png", f"{name}: misclassified")

    # The training run's own tags (its stage, commit) stay; evaluation adds its stage.
    eval_stage = tracking.context_tags().get("dvc_stage")
    eval_tags = {"dvc_eval_stage": eval_stage} if eval_stage else None
    with tracking.run(name, run_id=run_id, tags=eval_tags):
        tracking.log_metrics(metrics, prefix="test_")
        tracking.log_artifact(predictions, "evaluation")
        for png in sorted(figures_dir.glob("*.png")):
            tracking.log_artifact(png, "figures")
    click.echo(f"{name}: test accuracy {metrics['accuracy']:.4f} on {metrics['count']} images.",
               err=True)


if __name__ == "__main__":
    main()
