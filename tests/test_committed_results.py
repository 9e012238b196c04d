"""main carries the results of its own params: dvc.lock and metrics/ from one real run.

A pull request's report compares against these, and a clone's `dvc status` tells from them
what is up to date, so they must match params.yaml and the code as committed, and the
README's numbers must be the ones committed.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, tool_env

from catsdogs.evaluation.leaderboard import results_table
from catsdogs.reports.revisions import stale_stages

# A pull request that touches a stage leaves these red until someone reruns the stale stages
# on the machine of record: the tests workflow deselects them on pull requests and on
# branches other than main (`-m "not committed_results"`), where `catsdogs pr-report` names
# the stale stages instead; `.ci/run`, pushes to main and the README's command keep them.
pytestmark = pytest.mark.committed_results

README_TABLE = ("<!-- results table: catsdogs leaderboard -->", "<!-- end of results table -->")


def test_dvc_status_finds_nothing_changed_only_outputs_missing() -> None:
    result = subprocess.run(["dvc", "status", "--json"], cwd=PROJECT_ROOT, env=tool_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    stale = stale_stages(json.loads(result.stdout or "{}"))
    assert not stale, ("dvc.lock and metrics/ are not the results of the committed params "
                       "and code; run `dvc repro` and commit both:\n" + "\n".join(
                           f"{stage}: {change}" for stage, changes in stale.items()
                           for change in changes))


def test_every_stage_of_the_recipe_has_committed_results() -> None:
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=PROJECT_ROOT,
                            env=tool_env(), capture_output=True, text=True, check=True)
    lock = (PROJECT_ROOT / "dvc.lock").read_text()
    never_run = [s for s in stages.stdout.split() if f"\n  {s}:\n" not in lock]
    assert not never_run, f"stages with no results in dvc.lock: {never_run}"


def test_readme_results_table_is_the_committed_leaderboard() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    begin, end = README_TABLE
    assert begin in readme and end in readme, f"README.md must hold the table between {README_TABLE}"
    shown = readme.split(begin)[1].split(end)[0].strip()
    committed = results_table(pd.read_csv(PROJECT_ROOT / "metrics/leaderboard.csv"))
    assert shown == committed.strip(), (
        "README's results differ from metrics/leaderboard.csv; paste `catsdogs leaderboard`:\n"
        + committed)
