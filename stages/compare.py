"""DVC stage `compare`: the leaderboard of every model, and the champion in the registry.

Reads metrics/train/<model>.json, metrics/eval/<model>.json and metrics/data.json for every
model in params.yaml (`models` and `finetune`), and each model folder's MLflow run id.
Writes the leaderboard CSV and a Markdown copy, the champion to --champion, and registers the
champion (best validation accuracy, never test) in the MLflow Model Registry as `catsdogs`
with alias `champion`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from catsdogs import tracking
from catsdogs.atomic import write_csv, write_json, write_text
from catsdogs.compare import champion, leaderboard, to_markdown
from catsdogs.config import ConfigError, load_params
from catsdogs.stage_support import fails_clearly, params_option, setup_logging


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"'{path}' does not exist; run its train or evaluate stage first")
    return json.loads(path.read_text())


@click.command()
@params_option
@click.option("--metrics-dir", type=click.Path(file_okay=False, path_type=Path), default="metrics",
              show_default=True, help="Folder with train/, eval/ and data.json.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default="models",
              show_default=True, help="Folder with one trained model folder per model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/leaderboard.csv", show_default=True, help="Leaderboard CSV.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              default="reports/leaderboard.md", show_default=True, help="Leaderboard as Markdown.")
@click.option("--champion", "champion_path", type=click.Path(dir_okay=False, path_type=Path),
              default="metrics/champion.json", show_default=True,
              help="JSON naming the champion, its numbers and registry version.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the champion in the MLflow Model Registry.")
@fails_clearly(tracking.TrackingError)
def main(params_path: str, metrics_dir: Path, models_dir: Path, out: Path, report: Path,
         champion_path: Path, register: bool) -> None:
    """Rank every model by validation accuracy, beside its test accuracy and the majority
    baseline; register the best one as catsdogs@champion."""
    setup_logging()
    params = load_params(params_path)
    names = [*params.get("models", {}), *params.get("finetune", {})]
    train = {n: _read(metrics_dir / "train" / f"{n}.json") for n in names}
    evaluation = {n: _read(metrics_dir / "eval" / f"{n}.json") for n in names}
    board = leaderboard(train, evaluation, _read(metrics_dir / "data.json"))
    best = champion(board)

    version = None
    if register:
        tracking.connect()
        run_id = (models_dir / best / tracking.RUN_ID_FILE).read_text().strip()
        version = tracking.register_champion(run_id)
    write_csv(out, board)
    write_text(report, to_markdown(board, best, version))
    row = board[board["model"] == best].iloc[0]
    write_json(champion_path, {"model": best, "val_accuracy": float(row["val_accuracy"]),
                               "test_accuracy": float(row["test_accuracy"])})
    click.echo(to_markdown(board, best, version), err=True)


if __name__ == "__main__":
    main()
