"""The `catsdogs` command: user-facing tools beside the DVC stages.

Each subcommand lives in the module of its name: `predict` classifies photos, `evaluate`
scores a model on a labelled folder or archive (both load their model through
`model_source`), `ui` opens the MLflow runs, `leaderboard` prints the results table,
`zoo-stages` writes dvc.yaml's zoo stages, `report` and `pr-report` compare two revisions'
results. This module only gathers them under `main`.
"""

from __future__ import annotations

import click

from catsdogs.cli.evaluate import evaluate
from catsdogs.cli.leaderboard import leaderboard
from catsdogs.cli.pr_report import pr_report
from catsdogs.cli.predict import predict
from catsdogs.cli.report import report
from catsdogs.cli.ui import ui
from catsdogs.cli.zoo_stages import zoo_stages


@click.group()
@click.version_option(package_name="catsdogs")
def main() -> None:
    """catsdogs: a reproducible cats-vs-dogs classifier pipeline (DVC + Keras + MLflow)."""


main.add_command(predict)
main.add_command(evaluate)
main.add_command(ui)
main.add_command(leaderboard)
main.add_command(zoo_stages)
main.add_command(report)
main.add_command(pr_report)


if __name__ == "__main__":
    main()
