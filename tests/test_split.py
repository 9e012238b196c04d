"""split: checking every image, the every-5th test split, the manifest and data metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from catsdogs.core.atomic import write_csv
from catsdogs.data import parallel
from catsdogs.data.split import DataError, build_manifest, data_metrics

TOP = "cats_and_dogs_filtered"


@pytest.fixture()
def tree(extracted: Path, tmp_path: Path) -> Path:
    """A writable copy of the extracted synthetic data set."""
    copy = tmp_path / "raw"
    shutil.copytree(extracted, copy)
    return copy


def test_counts_and_every_fifth_validation_file_is_test(tree: Path) -> None:
    result = build_manifest(tree, test_every=5, strict=False)
    manifest = result.manifest
    counts = manifest.groupby(["split", "label"]).size().to_dict()
    assert counts == {
        ("test", "cat"): 2, ("test", "dog"): 2,
        ("train", "cat"): 12, ("train", "dog"): 12,
        ("validation", "cat"): 8, ("validation", "dog"): 8,
    }
    test_cats = manifest[(manifest.split == "test") & (manifest.label == "cat")]["path"]
    assert list(test_cats) == [f"{TOP}/validation/cats/cat.2004.jpg", f"{TOP}/validation/cats/cat.2009.jpg"]
    assert manifest["path"].is_unique
    assert set(manifest.loc[manifest.split == "train", "path"].str.split("/").str[1]) == {"train"}
    assert result.excluded.empty and result.duplicates.empty


def test_data_metrics_give_counts_and_baseline(tree: Path) -> None:
    metrics = data_metrics(build_manifest(tree, test_every=5, strict=False))
    assert metrics["splits"]["train"] == {
        "count": {"cat": 12, "dog": 12}, "total": 24, "baseline_accuracy": 0.5,
    }
    assert metrics["splits"]["test"]["total"] == 4
    assert metrics["excluded"] == 0 and metrics["cross_split_duplicates"] == 0


def test_manifest_is_byte_for_byte_deterministic(tree: Path, tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", build_manifest(tree, test_every=5, strict=False).manifest)
    write_csv(tmp_path / "b.csv", build_manifest(tree, test_every=5, strict=False).manifest)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_corrupt_jpeg_text_file_and_empty_file_are_excluded_and_listed(tree: Path) -> None:
    cats = tree / TOP / "train/cats"
    good = (cats / "cat.0.jpg").read_bytes()
    (cats / "cat.900.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (cats / "notes.txt").write_text("not an image")
    (cats / "cat.901.jpg").write_bytes(b"")
    result = build_manifest(tree, test_every=5, strict=False)
    excluded = dict(zip(result.excluded["path"], result.excluded["reason"], strict=True))
    assert set(excluded) == {f"{TOP}/train/cats/{n}" for n in ("cat.900.jpg", "notes.txt", "cat.901.jpg")}
    assert excluded[f"{TOP}/train/cats/cat.901.jpg"] == "empty file"
    assert "not a decodable image" in excluded[f"{TOP}/train/cats/notes.txt"]
    assert not result.manifest["path"].isin(list(excluded)).any()
    assert data_metrics(result)["excluded"] == 3
    assert (result.manifest.split == "train").sum() == 24


def test_worker_processes_check_as_threads_do(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A large collection is checked in worker processes: the same manifest, the same
    # refusals (which cross back from the workers with their kind and reason).
    (tree / TOP / "train/cats/cat.900.jpg").write_bytes(b"not a jpeg")
    on_threads = build_manifest(tree, test_every=5, strict=False)
    monkeypatch.setattr(parallel, "PROCESS_THRESHOLD", 1)
    in_processes = build_manifest(tree, test_every=5, strict=False)
    pd.testing.assert_frame_equal(on_threads.manifest, in_processes.manifest)
    pd.testing.assert_frame_equal(on_threads.excluded, in_processes.excluded)
    assert list(in_processes.excluded["kind"]) == ["unreadable"]


def test_a_file_that_cannot_be_read_is_excluded_and_listed(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tree / TOP / "train/dogs/dog.3.jpg"
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:  # root reads any file: the refusal is simulated
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    result = build_manifest(tree, test_every=5, strict=False)
    assert result.excluded.to_dict("records") == [
        {"path": f"{TOP}/train/dogs/dog.3.jpg", "kind": "unreadable",
         "reason": "cannot be read (Permission denied)"}]
    assert (result.manifest.split == "train").sum() == 23


def test_strict_makes_a_bad_file_an_error_naming_it(tree: Path) -> None:
    (tree / TOP / "validation/dogs/readme.txt").write_text("hello")
    with pytest.raises(DataError, match=r"readme.txt.*split.strict"):
        build_manifest(tree, test_every=5, strict=True)


def test_empty_class_folder_is_an_error(tree: Path) -> None:
    for f in (tree / TOP / "validation/cats").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="validation/cats' is empty"):
        build_manifest(tree, test_every=5, strict=False)


def test_missing_class_folder_is_an_error(tree: Path) -> None:
    shutil.rmtree(tree / TOP / "train/dogs")
    with pytest.raises(DataError, match=r"class folder for dog is missing in '.*/train'.*dogs/"):
        build_manifest(tree, test_every=5, strict=False)


def test_not_a_data_set_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "something").mkdir()
    with pytest.raises(DataError, match=r"no layout fits .* found 0 file.*Accepted layouts: tutorial"):
        build_manifest(tmp_path, test_every=5, strict=False)


def test_identical_images_across_splits_are_reported(tree: Path) -> None:
    shutil.copy(tree / TOP / "train/dogs/dog.3.jpg", tree / TOP / "validation/dogs/dog.2999.jpg")
    result = build_manifest(tree, test_every=5, strict=False)
    dupes = result.duplicates
    assert set(dupes["path"]) == {f"{TOP}/train/dogs/dog.3.jpg", f"{TOP}/validation/dogs/dog.2999.jpg"}
    assert dupes["sha256"].nunique() == 1
    assert data_metrics(result)["cross_split_duplicates"] == 1
    # Reported, not silently dropped: both files stay in their splits.
    assert isinstance(result.manifest, pd.DataFrame) and len(result.manifest) == 45


def test_a_decompression_bomb_is_excluded_and_listed(tree: Path) -> None:
    from test_images import bomb_png

    bomb_png(tree / TOP / "train/dogs/dog.999.png")
    result = build_manifest(tree, test_every=5, strict=False)
    excluded = dict(zip(result.excluded["path"], result.excluded["reason"], strict=True))
    assert list(excluded) == [f"{TOP}/train/dogs/dog.999.png"]
    assert "15000 x 15000 = 225,000,000 pixels, over the limit of 89,478,485" in excluded[
        f"{TOP}/train/dogs/dog.999.png"]
    assert (result.manifest.split == "train").sum() == 24


def test_strict_refuses_a_bomb_in_one_line_naming_it(tree: Path) -> None:
    from test_images import bomb_png

    bomb_png(tree / TOP / "validation/cats/cat.2999.png")
    with pytest.raises(DataError) as error:
        build_manifest(tree, test_every=5, strict=True)
    message = str(error.value)
    assert "\n" not in message and "cat.2999.png (15000 x 15000" in message
    assert "split.strict" in message


def test_pixel_limit_is_split_max_pixels(tree: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 40), (90, 90, 90)).save(tree / TOP / "train/cats/cat.998.jpg")
    result = build_manifest(tree, test_every=5, strict=False, max_pixels=32 * 32)  # synthetic: 32 px
    assert list(result.excluded["path"]) == [f"{TOP}/train/cats/cat.998.jpg"]
    assert "40 x 40 = 1,600 pixels, over the limit of 1,024" in result.excluded["reason"].iloc[0]
