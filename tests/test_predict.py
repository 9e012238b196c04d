"""`catsdogs predict`: files, folders, formats and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from catsdogs.cli import main
from catsdogs.config import load_params
from catsdogs.models import model_spec

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model = model_spec(PARAMS["models"], "m1_cnn").build((32, 32, 3))
    model.save(folder / "model.keras")
    return folder


@pytest.fixture()
def photos(extracted: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    shutil.copytree(extracted / "cats_and_dogs_filtered/validation", folder)
    return folder


def run(*args: str):
    return CliRunner().invoke(main, ["predict", *args])


def test_folder_recursively_as_json(model_dir: Path, photos: Path) -> None:
    result = run(str(photos), "--model", str(model_dir), "--format", "json", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 20  # 10 cats + 10 dogs, batches of 3
    assert {Path(r["path"]).parent.name for r in rows} == {"cats", "dogs"}
    for row in rows:
        assert 0.0 <= row["probability_dog"] <= 1.0
        assert row["label"] == ("dog" if row["probability_dog"] >= 0.5 else "cat")


def test_same_answers_whatever_the_batch_size(model_dir: Path, photos: Path) -> None:
    one = run(str(photos), "--model", str(model_dir), "--format", "csv", "--batch-size", "1")
    many = run(str(photos), "--model", str(model_dir), "--format", "csv", "--batch-size", "64")
    assert one.exit_code == many.exit_code == 0
    a = [line.split(",") for line in one.stdout.splitlines()[1:]]
    b = [line.split(",") for line in many.stdout.splitlines()[1:]]
    assert [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([float(r[2]) for r in a], [float(r[2]) for r in b], atol=1e-4)


def test_unreadable_files_are_skipped_with_a_warning(model_dir: Path, photos: Path, caplog) -> None:
    bad = photos / "cats" / "broken.jpg"
    bad.write_bytes(b"not really a jpeg")
    good = photos / "dogs" / "dog.2000.jpg"
    result = run(str(bad), str(good), "--model", str(model_dir), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith(str(good))
    assert len(result.stdout.splitlines()) == 2
    assert "broken.jpg" in caplog.text


def test_no_readable_image_is_an_error(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("text")
    result = run(str(tmp_path), "--model", str(model_dir))
    assert result.exit_code == 1 and "no readable image found" in result.output


def test_missing_model_is_a_clear_error(photos: Path, tmp_path: Path) -> None:
    result = run(str(photos), "--model", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "is not a trained model folder" in result.output
