"""DVC stage `compare`: the leaderboard of every model, and the champion in the registry.

Reads metrics/train/<model>.json, metrics/eval/<model>.json, metrics/history/<model>.csv and
metrics/data.json for every model of the zoo (`models` and `finetune` in params.yaml), and
each model folder's MLflow ids. Writes the leaderboard (CSV and Markdown, accuracies with
their 95% intervals), each model's validation and test accuracy (--accuracy, the metrics
`dvc exp show` leads with), every model's curves in one table (--curves, for the overlaid
plots), the champion to --champion, and points `catsdogs@champion` in the MLflow Model
Registry at the champion (best validation accuracy, never test).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from catsdogs import tracking
from catsdogs.atomic import write_csv, write_json, write_text
from catsdogs.compare import champion, curves, headline, leaderboard, to_markdown
from catsdogs.config import load_params
from catsdogs.errors import UserError
from catsdogs.machine import MACHINE_FILE
from catsdogs.stage_support import fails_clearly, params_option, setup_logging
from catsdogs.zoo import entry_names, params_digest


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
              help="JSON naming the champion and its validation and test accuracy.")
@click.option("--machines", "machines_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/machines.json", show_default=True,
              help="JSON of the machine each model trained on (from its model folder).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Point catsdogs@champion in the MLflow Model Registry at the champion.")
@fails_clearly
def main(params_path: str, metrics_dir: Path, models_dir: Path, out: Path, accuracy_path: Path,
         curves_path: Path, report: Path, champion_path: Path, machines_path: Path,
         register: bool) -> None:
    """Rank every model by validation accuracy, beside its test accuracy and the majority
    baseline; make the best one catsdogs@champion."""
    setup_logging()
    params = load_params(params_path)
    names = entry_names(params)
    board = leaderboard({n: _read(metrics_dir / "train" / f"{n}.json") for n in names},
                        {n: _read(metrics_dir / "eval" / f"{n}.json") for n in names},
                        _read(metrics_dir / "data.json"))
    best = champion(board)
    row = board[board["model"] == best].iloc[0]
    numbers = {"val_accuracy": float(row["val_accuracy"]),
               "test_accuracy": float(row["test_accuracy"])}

    version = None
    if register:
        tracking.connect()
        commit = tracking.git_commit()
        _, model_id = tracking.read_ids(models_dir / best)
        version = tracking.register_champion(model_id, tags={
            "model_name": best, "params_digest": params_digest(params, best),
            "git_commit": commit[0] if commit else "unknown",
            **{key: f"{value:.4f}" for key, value in numbers.items()},
        })
    write_csv(out, board)
    # In zoo order, validation before test: the order `dvc exp show` shows them in.
    write_json(accuracy_path, headline(board, names), sort_keys=False)
    write_csv(curves_path, curves({n: pd.read_csv(metrics_dir / "history" / f"{n}.csv")
                                   for n in names}))
    write_text(report, to_markdown(board, best, version))
    write_json(champion_path, {"model": best, **numbers})
    # Models trained before machines were recorded have no file: they are left out.
    write_json(machines_path, {n: json.loads((models_dir / n / MACHINE_FILE).read_text())
                               for n in names if (models_dir / n / MACHINE_FILE).is_file()},
               sort_keys=False)
    click.echo(to_markdown(board, best, version), err=True)


if __name__ == "__main__":
    main()
