"""`catsdogs evaluate PATH`: a model scored on a labelled folder or archive of any layout."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import jpeg_bytes

from catsdogs.cli.main import main
from catsdogs.evaluation.stats import wilson_interval


@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that knows the synthetic photos: dark means dog (a logit of +6 or so), bright
    means cat, so every verdict below is known before it is made."""
    inputs = keras.Input((32, 32, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(mean))
    dense.set_weights([np.full((3, 1), -1 / 30, "float32"), np.array([12.5], "float32")])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def collection(root: Path) -> Path:
    """10 cats and 10 dogs in class folders, 2 dogs filed as cats, and a note."""
    for n in range(10):
        (root / "pets/Cats").mkdir(parents=True, exist_ok=True)
        (root / "pets/Dogs").mkdir(parents=True, exist_ok=True)
        (root / f"pets/Cats/{n}.jpg").write_bytes(jpeg_bytes("cat", n))
        (root / f"pets/Dogs/{n}.jpg").write_bytes(jpeg_bytes("dog", n))
    for n in (10, 11):
        (root / f"pets/Cats/{n}.jpg").write_bytes(jpeg_bytes("dog", n))
    (root / "notes.txt").write_text("my pets")
    return root


def run(*args: str):
    """`catsdogs evaluate`, reading no params.yaml unless a test passes one."""
    if "--params" not in args:
        args = (*args, "--params", "no-such-params.yaml")
    return CliRunner().invoke(main, ["evaluate", *args])


def test_a_folder_gives_accuracy_per_class_scores_and_the_misses(
    brightness_model: Path, tmp_path: Path
) -> None:
    root = collection(tmp_path / "photos")
    result = run(str(root), "--model", str(brightness_model), "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["layout"], summary["photos"], summary["skipped"]) == ("class_folders", 22, 1)
    assert summary["accuracy"] == pytest.approx(20 / 22)
    assert (summary["accuracy_low"], summary["accuracy_high"]) == pytest.approx(wilson_interval(20, 22))
    assert summary["confusion_matrix"] == [[10, 2], [0, 10]]
    assert summary["classes"] == {
        "cat": {"precision": 1.0, "recall": pytest.approx(10 / 12), "photos": 12},
        "dog": {"precision": pytest.approx(10 / 12), "recall": 1.0, "photos": 10}}
    assert sorted(m["path"] for m in summary["misclassified"]) == ["pets/Cats/10.jpg", "pets/Cats/11.jpg"]
    assert all((m["actual"], m["predicted"]) == ("cat", "dog") for m in summary["misclassified"])
    assert "skipped notes.txt: no label: neither in a class folder nor named for a class" in result.stderr


def test_the_table_reads_as_a_report(brightness_model: Path, tmp_path: Path) -> None:
    result = run(str(collection(tmp_path / "photos")), "--model", str(brightness_model))
    assert result.exit_code == 0, result.output
    low, high = wilson_interval(20, 22)
    assert f"accuracy 0.9091 (95% interval {low:.3f}-{high:.3f})" in result.stdout
    assert "cat       1.0000  0.8333      12" in result.stdout
    assert "misclassified: 2" in result.stdout


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_in_the_kaggle_layout_as_csv(brightness_model: Path, tmp_path: Path,
                                                kind: str) -> None:
    archive = tmp_path / f"photos.{kind}"
    files = {f"train/{label}.{n}.jpg": jpeg_bytes(label, n) for label in ("cat", "dog") for n in range(6)}
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name, data in files.items():
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tf.addfile(entry, io.BytesIO(data))
    result = run(str(archive), "--model", str(brightness_model), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12 and {r["correct"] for r in rows} == {"True"}
    assert {r["path"] for r in rows} == set(files)
    assert {r["actual"] for r in rows if r["path"].startswith("train/cat")} == {"cat"}


def test_class_names_come_from_params(brightness_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for n in range(3):
        (root / "Katze").mkdir(parents=True, exist_ok=True)
        (root / "Katze" / f"{n}.jpg").write_bytes(jpeg_bytes("cat", n))
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  class_names: {cat: [katze], dog: [hund]}\n")
    result = run(str(root), "--model", str(brightness_model), "--format", "json", "--params", str(params))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"]["cat"]["photos"] == 3


def test_no_layout_and_a_broken_archive_are_refused_clearly(brightness_model: Path,
                                                             tmp_path: Path) -> None:
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday/IMG_1.jpg").write_bytes(jpeg_bytes("cat", 1))
    result = run(str(tmp_path / "holiday"), "--model", str(brightness_model))
    assert result.exit_code == 1 and "no layout fits" in result.output and "IMG_1.jpg" in result.output
    (tmp_path / "bad.zip").write_bytes(b"not an archive")
    result = run(str(tmp_path / "bad.zip"), "--model", str(brightness_model))
    assert result.exit_code == 1 and "not a zip or tar archive" in result.output


def test_no_readable_labelled_photo_is_an_error(brightness_model: Path, tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats/a.jpg").write_bytes(b"broken")
    result = run(str(tmp_path), "--model", str(brightness_model))
    assert result.exit_code == 1 and "no labelled photo" in result.output
    assert "skipped cats/a.jpg" in result.output
