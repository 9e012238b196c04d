"""The `catsdogs` command: user-facing tools beside the DVC stages.

`catsdogs predict PATH...` classifies photos with a trained model folder (the output of
`train@<model>`) and prints one line per image as a table, CSV or JSON lines.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from catsdogs.stage_support import setup_logging


def _load_model(source: str):
    """A Keras model from a model folder, a .keras file, or an MLflow models:/ or runs:/ URI."""
    if source.startswith(("models:/", "runs:/")):
        from catsdogs import tracking

        try:
            tracking.connect()
            return tracking.load_keras_model(source)
        except tracking.TrackingError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error
    path = Path(source)
    from catsdogs.models import MODEL_FILE

    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
        raise click.BadParameter(
            f"'{source}' is not a trained model folder or .keras file; run `dvc repro` "
            "(or `dvc pull`) first, or pass --model models/<name>",
            param_hint="--model",
        )
    import keras

    return keras.models.load_model(model_file)


@click.group()
@click.version_option(package_name="catsdogs")
def main() -> None:
    """catsdogs: a reproducible cats-vs-dogs classifier pipeline (DVC + Keras + MLflow)."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_source", default="models/m4_transfer", show_default=True,
              help="A trained model folder (with model.keras), a .keras file, or an MLflow "
                   "model URI such as models:/catsdogs@champion.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output: aligned table, CSV, or one JSON object per line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded and classified at a time (bounds memory).")
def predict(paths: tuple[Path, ...], model_source: str, fmt: str, batch_size: int) -> None:
    """Classify image files and folders (recursively) as cat or dog."""
    setup_logging()
    model = _load_model(model_source)

    from catsdogs.predict import predict_files

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(["path", "label", "probability_dog"])
    count = 0
    for prediction in predict_files(model, list(paths), batch_size=batch_size):
        count += 1
        if writer:
            writer.writerow([prediction.path, prediction.label, prediction.probability_dog])
        elif fmt == "json":
            click.echo(json.dumps(prediction.__dict__))
        else:
            click.echo(f"{prediction.label:<4} {prediction.probability_dog:8.4f}  {prediction.path}")
    if count == 0:
        raise click.ClickException(f"no readable image found in: {', '.join(map(str, paths))}")


@main.command()
@click.option("--base", required=True, help="Revision to compare against, e.g. origin/main.")
@click.option("--head", default=None, help="Revision to report on [default: the working tree].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default="reports/pr/report.md", show_default=True,
              help="Markdown file to write; figures go to a figures/ folder beside it.")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=".", show_default=True, help="The catsdogs repository.")
def report(base: str, head: str | None, out: Path, repo: Path) -> None:
    """Compare params, accuracies and curves of HEAD (or the working tree) with BASE."""
    setup_logging()
    import io

    import pandas as pd

    from catsdogs import figures
    from catsdogs.atomic import atomic_dir, write_text
    from catsdogs.report import metrics_table, params_table, render
    from catsdogs.revisions import RevisionError, check_revision, dvc_diff, list_files, read_text
    from catsdogs.split import LABELS

    try:
        for rev in (base, head):
            if rev:
                check_revision(repo, rev)
        params = params_table(dvc_diff(repo, "params", base, head))
        metrics = metrics_table(dvc_diff(repo, "metrics", base, head, unchanged=True))
    except RevisionError as error:
        raise click.ClickException(str(error)) from error

    def csv_at(rev: str | None, path: str) -> pd.DataFrame | None:
        text = read_text(repo, rev, path)
        return pd.read_csv(io.StringIO(text)) if text else None

    def json_at(rev: str | None, path: str) -> dict | None:
        text = read_text(repo, rev, path)
        return json.loads(text) if text else None

    revisions = {f"base {base}": base, f"head {head or 'working tree'}": head}
    models = sorted({f.removesuffix(".csv") for rev in revisions.values()
                     for f in list_files(repo, rev, "metrics/history") if f.endswith(".csv")})
    drawn = []
    with atomic_dir(out.parent / "figures") as tmp:
        for model in models:
            histories = {k: csv_at(rev, f"metrics/history/{model}.csv") for k, rev in revisions.items()}
            figures.curves_compared(histories, tmp / f"{model}_curves.png", f"{model}: accuracy per epoch")
            matrices = {k: (json_at(rev, f"metrics/eval/{model}.json") or {}).get("confusion_matrix")
                        for k, rev in revisions.items()}
            figures.confusion_compared(matrices, LABELS, tmp / f"{model}_confusion.png",
                                       f"{model}: test confusion matrices")
            drawn += [f"figures/{model}_curves.png", f"figures/{model}_confusion.png"]
    markdown = render(base=base, head=head or "working tree", params=params, metrics=metrics,
                      leaderboard=csv_at(head, "metrics/leaderboard.csv"), figures=drawn)
    write_text(out, markdown)
    click.echo(markdown)


if __name__ == "__main__":
    main()
