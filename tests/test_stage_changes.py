"""Which stages a change touches, read from two checkouts of the real dvc.yaml before training.

A pull-request report trains only the models whose training or evaluation the change
touches, at both revisions: a change to one model's settings touches that model and what
fine-tunes from it; a change to code every train stage runs, or to the data, touches all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_project, project_params

from catsdogs.reports.stage_changes import models_touched, stage_views, touched_stages


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    return make_project(tmp_path / "base", project_params())


def touched_models(base: Path, head: Path) -> tuple[dict[str, list[str]], list[str]]:
    touched = touched_stages(stage_views(base), stage_views(head))
    return touched, models_touched(project_params(), touched)


def test_nothing_changed_touches_nothing(base: Path, tmp_path: Path) -> None:
    head = make_project(tmp_path / "head", project_params())
    assert touched_models(base, head) == ({}, [])


def test_one_models_params_touch_that_model_and_its_fine_tunes(base: Path, tmp_path: Path) -> None:
    params = project_params()
    tuned = {name: entry["init_from"] for name, entry in params["finetune"].items()}
    parent = next(iter(tuned.values()))
    cnn = next(name for name, entry in params["models"].items() if entry["arch"] == "cnn")
    for changed, expected in ((cnn, [cnn]), (parent, [parent, *tuned])):
        params = project_params()
        params["models"][changed]["dropout"] = 0.35
        head = make_project(tmp_path / f"head-{changed}", params)
        touched, models = touched_models(base, head)
        assert models == expected
        assert touched[f"train@{changed}"] == [f"param models.{changed}.dropout"]
        assert f"after train@{changed}" in touched[f"evaluate@{changed}"]
        assert "compare" in touched and "split" not in touched


def test_code_every_train_stage_runs_touches_every_model(base: Path, tmp_path: Path) -> None:
    head = make_project(tmp_path / "head", project_params())
    training = head / "src/catsdogs/training/train.py"
    training.write_text(training.read_text() + "\n# a comment is a change to DVC\n")
    touched, models = touched_models(base, head)
    assert models == list(project_params()["models"]) + list(project_params()["finetune"])
    assert touched["train@" + models[0]] == ["file src/catsdogs/training/train.py"]
    assert "split" not in touched


def test_a_change_to_the_data_touches_every_model(base: Path, tmp_path: Path) -> None:
    params = project_params()
    params["split"]["test_every"] = 4
    head = make_project(tmp_path / "head", params)
    touched, models = touched_models(base, head)
    assert touched["split"] == ["param split.test_every"]
    assert "download" not in touched
    assert models == list(params["models"]) + list(params["finetune"])
    assert "after split" in touched["train@" + models[0]]
