"""DVC stage `compare`: the leaderboard of every model, and the best one in the registry.

Reads params.yaml (the zoo: `models` and `finetune`; and the settings each model's digest is
made of), metrics/train/<model>.json, metrics/eval/<model>.json, metrics/history/<model>.csv,
metrics/data.json, the manifest (which validation photos the numbers were measured on) and
each model folder's training record and MLflow ids. Writes the leaderboard (CSV and
Markdown, accuracies with their 95% intervals), each model's validation and test accuracy
(--accuracy, the metrics `dvc exp show` leads with), every model's curves in one table
(--curves, for the overlaid plots), the best model by validation accuracy (never test) to
--champion, and the machine each model trained on to --machines.

Then registers the best model in the MLflow Model Registry as a version of `catsdogs`: a
pyfunc that takes photos (`photo_pyfunc`) around its Keras file, logged once per trained
model, with a test photo as its input example (--images holds the photos). It takes the
`champion` alias (what `predict` and serving use) only when it beats the current champion
on the same validation photos, or when the champion is the same model taking arrays (a
store from before photo serving); otherwise it gets `challenger`
(`evaluation.champion.champion_decision`). Inside `dvc exp run` nothing is registered unless asked
(--register yes, or CATSDOGS_REGISTER=yes): an experiment must not move the team's alias.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pandas as pd

from catsdogs.cli.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.core.atomic import write_csv, write_json, write_text
from catsdogs.core.errors import UserError
from catsdogs.core.machine import MACHINE_FILE
from catsdogs.core.params import load_params
from catsdogs.data.manifest import read_manifest, split_digest
from catsdogs.evaluation.leaderboard import best_model, curves, headline, leaderboard, to_markdown
from catsdogs.tracking.logged_models import known_model, read_ids
from catsdogs.tracking.photo_model import photo_model
from catsdogs.tracking.registry import VALIDATION_DATA_TAG, register_candidate, uncommitted_paths
from catsdogs.tracking.runs import git_commit
from catsdogs.tracking.store import connect
from catsdogs.training.history import TRAINING_FILE
from catsdogs.zoo.entries import params_digest
from catsdogs.zoo.settings import entry_names

# Set by DVC in every stage of an experiment (`dvc exp run`, queued or not) to its name.
DVC_EXP_NAME = "DVC_EXP_NAME"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"'{path}' does not exist; run its train or evaluate stage first")
    return json.loads(path.read_text())


@click.command()
@params_option
@click.option("--metrics-dir", type=click.Path(file_okay=False, path_type=Path), default="metrics",
              show_default=True, help="Folder with train/, eval/, history/ and data.json.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default="models",
              show_default=True, help="Folder with one trained model folder per model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/leaderboard.csv", show_default=True, help="Leaderboard CSV.")
@click.option("--accuracy", "accuracy_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/accuracy.json", show_default=True,
              help="Each model's validation and test accuracy (JSON).")
@click.option("--curves", "curves_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/curves.csv", show_default=True,
              help="Every model's per-epoch history in one CSV.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              default="reports/leaderboard.md", show_default=True, help="Leaderboard as Markdown.")
@click.option("--champion", "champion_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/champion.json", show_default=True,
              help="JSON naming the best model by validation accuracy, with its validation "
                   "and test accuracy (what the registry did with it is in --report).")
@click.option("--machines", "machines_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/machines.json", show_default=True,
              help="JSON of the machine each model trained on (from its model folder).")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              default="data/split/manifest.csv", show_default=True,
              help="The split's manifest: which validation photos the accuracies were measured on.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), default="data/raw",
              show_default=True, help="Folder the manifest's paths are relative to: the "
                                      "registered model's input example is its first test photo.")
@click.option("--register", type=click.Choice(["auto", "yes", "no"]), default="auto",
              envvar="CATSDOGS_REGISTER", show_default=True,
              help="Register the best model in the MLflow Model Registry: auto registers except "
                   "inside `dvc exp run` (env: CATSDOGS_REGISTER).")
@click.option("--promote", is_flag=True,
              help="Give the best model the champion alias even if it does not beat the current "
                   "champion, or was validated on other photos.")
@fails_clearly
def main(params_path: str, metrics_dir: Path, models_dir: Path, out: Path, accuracy_path: Path,
         curves_path: Path, report: Path, champion_path: Path, machines_path: Path,
         manifest: Path, images: Path, register: str, promote: bool) -> None:
    """Rank every model by validation accuracy, beside its test accuracy and the majority
    baseline; register the best one, as champion only if it beats the current one."""
    setup_logging()
    params = load_params(params_path)
    names = entry_names(params)
    board = leaderboard({n: _read(metrics_dir / "train" / f"{n}.json") for n in names},
                        {n: _read(metrics_dir / "eval" / f"{n}.json") for n in names},
                        _read(metrics_dir / "data.json"),
                        {n: _read(models_dir / n / TRAINING_FILE) for n in names
                         if (models_dir / n / TRAINING_FILE).is_file()})
    best = best_model(board)
    row = board[board["model"] == best].iloc[0]
    numbers = {"val_accuracy": float(row["val_accuracy"]),
               "test_accuracy": float(row["test_accuracy"])}

    experiment = os.environ.get(DVC_EXP_NAME)
    if register == "no" or (register == "auto" and experiment):
        why = (f"inside `dvc exp run` ({experiment})" if register == "auto" else "--register no")
        registry = (f"Not registered ({why}): the registry's champion is left as it was; "
                    "CATSDOGS_REGISTER=yes registers it.")
    else:
        connect()
        commit = git_commit()
        run_id, model_id = read_ids(models_dir / best)
        rows = read_manifest(manifest)
        # A model made from uncommitted code or params never takes the champion alias
        # unless promoted: its git_commit did not make it.
        tags = {"model_name": best, "params_digest": params_digest(params, best),
                "git_commit": commit[0] if commit else "unknown",
                VALIDATION_DATA_TAG: split_digest(rows, "validation"),
                **{key: f"{value:.4f}" for key, value in numbers.items()}}
        photo_model_id = None
        if known_model(model_id):
            # The registered model takes photos; its input example is a test photo.
            first_test = rows.sort_values("split", key=lambda split: split != "test", kind="stable")
            example = images / first_test["path"].iloc[0]
            photo_model_id, photo_tags = photo_model(
                models_dir / best, name=f"{best}_photos", run_id=run_id, keras_model_id=model_id,
                example_photo=example.read_bytes(),
                max_pixels=(params.get("split") or {}).get("max_pixels"))
            tags.update(photo_tags)
        registration = register_candidate(
            photo_model_id, tags, promote=promote, uncommitted=uncommitted_paths(),
            wraps=model_id)
        registry = (f"Registered as `catsdogs` version {registration.version}, alias "
                    f"`{registration.alias}`: {registration.reason}." if registration else
                    "Not registered: its MLflow model is not in this tracking store.")
    write_csv(out, board)
    # In zoo order, validation before test: the order `dvc exp show` shows them in.
    write_json(accuracy_path, headline(board, names), sort_keys=False)
    write_csv(curves_path, curves({n: pd.read_csv(metrics_dir / "history" / f"{n}.csv")
                                   for n in names}))
    write_text(report, to_markdown(board, best, registry))
    write_json(champion_path, {"model": best, **numbers})
    # Models trained before machines were recorded have no file: they are left out.
    write_json(machines_path, {n: json.loads((models_dir / n / MACHINE_FILE).read_text())
                               for n in names if (models_dir / n / MACHINE_FILE).is_file()},
               sort_keys=False)
    click.echo(to_markdown(board, best, registry), err=True)


if __name__ == "__main__":
    main()
