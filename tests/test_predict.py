"""`catsdogs predict`: files, folders, formats, photos from the wild and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_params
from PIL import Image
from test_images import bomb_png, halves, sideways_jpeg

from catsdogs.cli.main import main
from catsdogs.data.images import DEFAULT_MAX_PIXELS, read_image
from catsdogs.inference.predict import Prediction, Skipped, classify
from catsdogs.zoo.entries import model_spec

PARAMS = tiny_params()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    name = next(iter(PARAMS["models"]))
    model = model_spec(PARAMS["models"], name).build((32, 32, 3))
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
    rows = json.loads(result.stdout)  # one JSON document, as `jq '.[]'` reads it
    assert len(rows) == 20  # 10 cats + 10 dogs, batches of 3
    assert {Path(r["path"]).parent.name for r in rows} == {"cats", "dogs"}
    for row in rows:
        assert 0.0 <= row["probability_dog"] <= 1.0
        assert row["label"] == ("dog" if row["probability_dog"] > 0.5 else "cat")
    lines = run(str(photos), "--model", str(model_dir), "--format", "jsonl", "--batch-size", "3")
    assert lines.exit_code == 0, lines.output
    assert [json.loads(line) for line in lines.stdout.splitlines()] == rows  # one per line


def test_same_answers_whatever_the_batch_size(model_dir: Path, photos: Path) -> None:
    one = run(str(photos), "--model", str(model_dir), "--format", "csv", "--batch-size", "1")
    many = run(str(photos), "--model", str(model_dir), "--format", "csv", "--batch-size", "64")
    assert one.exit_code == many.exit_code == 0
    a = [line.split(",") for line in one.stdout.splitlines()[1:]]
    b = [line.split(",") for line in many.stdout.splitlines()[1:]]
    assert [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([float(r[2]) for r in a], [float(r[2]) for r in b], atol=1e-4)


def test_unreadable_files_are_skipped_with_a_warning(model_dir: Path, photos: Path) -> None:
    bad = photos / "cats" / "broken.jpg"
    bad.write_bytes(b"not really a jpeg")
    good = photos / "dogs" / "dog.2000.jpg"
    result = run(str(bad), str(good), "--model", str(model_dir), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith(str(good))
    assert len(result.stdout.splitlines()) == 2
    assert f"skipped {bad}: not a decodable image" in result.stderr


def test_no_readable_image_is_an_error(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("text")
    result = run(str(tmp_path), "--model", str(model_dir))
    assert result.exit_code == 1 and "no readable image found" in result.output


def test_missing_model_is_a_clear_error(photos: Path, tmp_path: Path) -> None:
    result = run(str(photos), "--model", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "is not a trained model folder" in result.output


@pytest.mark.parametrize(
    ("content", "described"),
    [
        (b"hello, I am not a model", "23 bytes of text starting 'hello, I am not a model'"),
        (b"", "an empty file"),
        (b"\x89HDF\r\n\x1a\n" + bytes(100), "an HDF5 file of 108 bytes"),
    ],
)
def test_a_model_file_that_is_not_keras_says_what_it_is(
    photos: Path, tmp_path: Path, content: bytes, described: str
) -> None:
    folder = tmp_path / "m1"
    folder.mkdir()
    (folder / "model.keras").write_bytes(content)
    result = run(str(photos), "--model", str(folder))
    assert result.exit_code == 2, result.output
    assert f"is not a Keras model file: it is {described}" in result.output
    assert "a model folder holds model.keras" in result.output


def test_photos_from_the_wild(model_dir: Path, tmp_path: Path, photos: Path) -> None:
    wild = tmp_path / "wild"
    wild.mkdir()
    shutil.copy(photos / "cats/cat.2000.jpg", wild / "cat.jpg")
    for fmt, suffix in (("WEBP", ".webp"), ("TIFF", ".tiff"), ("HEIF", ".heic")):
        Image.open(photos / "dogs/dog.2000.jpg").save(wild / f"dog{suffix}", format=fmt)
    sideways_jpeg(wild / "sideways.jpg", halves())
    bomb_png(wild / "bomb.png", side=20_000)
    (wild / "notes.txt").write_text("vet on Tuesday")
    (wild / "empty.jpg").write_bytes(b"")
    result = run(str(wild), "--model", str(model_dir), "--format", "csv")
    assert result.exit_code == 0, result.output
    classified = {Path(line.split(",")[0]).name for line in result.stdout.splitlines()[1:]}
    assert classified == {"cat.jpg", "dog.webp", "dog.tiff", "dog.heic", "sideways.jpg"}
    skipped = {line.split(":")[0].removeprefix("skipped ").split("/")[-1]: line
               for line in result.stderr.splitlines() if line.startswith("skipped ")}
    assert set(skipped) == {"bomb.png", "notes.txt", "empty.jpg"}
    assert "20000 x 20000 = 400,000,000 pixels, over the limit" in skipped["bomb.png"]
    assert "raise --max-pixels" in skipped["bomb.png"]
    assert "not an image file (.txt)" in skipped["notes.txt"]
    assert "empty file" in skipped["empty.jpg"]


def test_many_skipped_files_are_counted_by_reason(model_dir: Path, tmp_path: Path, photos: Path) -> None:
    shutil.copy(photos / "cats/cat.2000.jpg", tmp_path / "cat.jpg")
    for i in range(25):
        (tmp_path / f"sidecar{i:02}.xmp").write_text("<x/>")
    for i in range(3):
        (tmp_path / f"z_broken{i}.png").write_bytes(b"nope")
    result = run(str(tmp_path), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    named = [line for line in result.stderr.splitlines() if line.startswith("skipped /")]
    assert len(named) == 20
    assert ("skipped 28 files in all; besides the 20 named above: 5 not an image file, "
            "3 unreadable") in result.stderr


def test_prediction_input_is_the_upright_decoded_image(tmp_path: Path) -> None:
    upright = halves()
    upright.save(tmp_path / "upright.jpg", format="JPEG", quality=100, subsampling=0)
    sideways = sideways_jpeg(tmp_path / "sideways.jpg", upright)
    seen = []

    class Recorder:  # a stand-in model: records its input, answers a logit of 0
        input_shape = (None, 32, 32, 3)
        layers = (keras.layers.Identity(name="logit"),)

        def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
            seen.extend(images)
            return np.zeros((len(images), 1))

    results = list(classify(Recorder(), [tmp_path / "upright.jpg", sideways],
                            max_pixels=DEFAULT_MAX_PIXELS))
    assert all(isinstance(r, Prediction) for r in results)
    expected = read_image(sideways, 32, max_pixels=None).astype(np.float32)
    np.testing.assert_array_equal(seen[1], expected)  # predict sees what training sees
    assert np.abs(seen[0] - seen[1]).max() <= 3  # and that is the upright picture
    missing = list(classify(Recorder(), [tmp_path / "gone.jpg"], max_pixels=DEFAULT_MAX_PIXELS))
    assert missing == [Skipped(str(tmp_path / "gone.jpg"), "missing", "no such file or folder")]
    # In a folder, what is neither a folder nor a file (a broken link) is named, not dropped.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    [broken] = list(classify(Recorder(), [folder], max_pixels=DEFAULT_MAX_PIXELS))
    assert (broken.path, broken.kind) == (str(folder / "gone.jpg"), "not a file")
