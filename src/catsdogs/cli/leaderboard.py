"""`catsdogs leaderboard`: print each model's validation and test accuracy, with 95%
intervals, as the README's Markdown table, read from the compare stage's
metrics/leaderboard.csv.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--metrics-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default="metrics", show_default=True, help="The pipeline's metrics folder.")
def leaderboard(metrics_dir: Path) -> None:
    """Print each model's validation and test accuracy, with 95% intervals, as Markdown (the
    README's table), from the compare stage's metrics/leaderboard.csv."""
    import pandas as pd

    from catsdogs.evaluation.leaderboard import results_table

    board = metrics_dir / "leaderboard.csv"
    if not board.is_file():
        raise click.ClickException(f"'{board}' does not exist; run `dvc repro` (or `dvc pull`) first")
    click.echo(results_table(pd.read_csv(board)))
