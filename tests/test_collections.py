"""Collections in any layout: labels from layouts, the content-hash split, near-duplicates."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from catsdogs.data.layouts import LayoutError, read_layout
from catsdogs.data.split import DataError, build_manifest, data_metrics, hash_split

# Wide fractions: a few dozen photos still give every split some of each class.
FRACTIONS = {"validation_fraction": 0.3, "test_fraction": 0.3}


def photo(seed: int, size: int = 48) -> bytes:
    """A JPEG of its own: smooth random blobs, so its perceptual hash is its own too."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3)).astype("uint8")
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def near_copy(data: bytes) -> bytes:
    """The same photo re-encoded smaller and at a lower quality: other bytes, same look."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    image.resize((40, 40), Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def kaggle_files(numbers: range, seed: int = 0) -> dict[str, bytes]:
    return {f"train/{label}.{n}.jpg": photo(seed + 2 * n + (label == "dog"))
            for n in numbers for label in ("cat", "dog")}


def splits_of(manifest: pd.DataFrame) -> dict[str, str]:
    return dict(zip(manifest["path"], manifest["split"], strict=True))


# ---- Layouts ------------------------------------------------------------------------------


def test_class_folders_at_any_depth_any_case(tmp_path: Path) -> None:
    root = write(tmp_path, {"pets/Cats/a.jpg": b"1", "pets/2019/DOG/b.jpg": b"2",
                            "pets/dog/x/cat/c.jpg": b"3", "misc/d.jpg": b"4",
                            ".hidden/cat/e.jpg": b"5", "__MACOSX/cats/._a.jpg": b"6"})
    layout = read_layout(root)
    assert layout.name == "class_folders"
    labels = {f.path.relative_to(root).as_posix(): f.label for f in layout.files}
    # The nearest class folder wins; hidden folders and macOS debris are not photos.
    assert labels == {"pets/Cats/a.jpg": "cat", "pets/2019/DOG/b.jpg": "dog",
                      "pets/dog/x/cat/c.jpg": "cat", "misc/d.jpg": None}
    unlabelled = next(f for f in layout.files if f.label is None)
    assert unlabelled.reason == "no label: neither in a class folder nor named for a class"


def test_files_outside_class_folders_fall_back_to_their_names(tmp_path: Path) -> None:
    root = write(tmp_path, {f"train/{label}.{n}.jpg": b"x" for n in range(5) for label in ("cat", "dog")}
                 | {"extra/dogs/dog.999.jpg": b"x", "extra/dogs/Puppy.jpg": b"x"})
    layout = read_layout(root)
    assert layout.name == "class_folders" and len(layout.labelled) == 12


def test_class_names_are_a_setting(tmp_path: Path) -> None:
    root = write(tmp_path, {"katze/a.jpg": b"1", "hund/b.jpg": b"2", "cats/c.jpg": b"3"})
    layout = read_layout(root, {"cat": ["katze"], "dog": ["Hund"]})
    assert {f.path.name: f.label for f in layout.files} == {"a.jpg": "cat", "b.jpg": "dog",
                                                             "c.jpg": None}


def test_file_name_prefixes_label_the_kaggle_layout(tmp_path: Path) -> None:
    names = ["cat.1.jpg", "dog_5.png", "Cats-01.jpg", "DOG 7.jpg", "dog9.jpg", "category.jpg",
             "dogma.png", "readme.txt"]
    root = write(tmp_path, {f"train/{n}": b"x" for n in names})
    layout = read_layout(root)
    assert layout.name == "name_prefix"
    assert {f.path.name: f.label for f in layout.files} == {
        "cat.1.jpg": "cat", "dog_5.png": "dog", "Cats-01.jpg": "cat", "DOG 7.jpg": "dog",
        "dog9.jpg": "dog", "category.jpg": None, "dogma.png": None, "readme.txt": None}


def test_the_tutorial_layout_wins_and_keeps_its_split(extracted: Path) -> None:
    layout = read_layout(extracted)
    assert layout.name == "tutorial" and len(layout.labelled) == 44
    assert {f.given_split for f in layout.files} == {"train", "validation"}


def test_no_layout_says_what_was_found_and_what_is_accepted(tmp_path: Path) -> None:
    root = write(tmp_path, {"holiday/IMG_001.jpg": b"1", "holiday/IMG_002.jpg": b"2"})
    with pytest.raises(LayoutError) as error:
        read_layout(root)
    message = str(error.value)
    assert "found 2 file(s) in 1 folder(s), e.g. holiday/IMG_001.jpg, holiday/IMG_002.jpg" in message
    for accepted in ("tutorial:", "class_folders:", "name_prefix:", "cat: cat, cats", "split.class_names"):
        assert accepted in message


@pytest.mark.parametrize(
    ("names", "message"),
    [({"cat": ["cat"]}, "exactly cat, dog"), ({"cat": ["pet"], "dog": ["Pet"]}, "'Pet' to both cat and dog"),
     ({"cat": [], "dog": ["dog"]}, "class_names.cat is empty")],
)
def test_bad_class_names_are_refused(tmp_path: Path, names: dict, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        read_layout(write(tmp_path, {"cat/a.jpg": b"1"}), names)


# ---- The split of a collection ------------------------------------------------------------


def test_hash_split_follows_the_fractions() -> None:
    shas = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(4000)]
    splits = pd.Series([hash_split(s, validation_fraction=0.2, test_fraction=0.1) for s in shas])
    shares = splits.value_counts(normalize=True)
    assert abs(shares["test"] - 0.1) < 0.02 and abs(shares["validation"] - 0.2) < 0.02
    assert hash_split("0" * 64, validation_fraction=0.2, test_fraction=0.1) == "test"
    assert hash_split("f" * 64, validation_fraction=0.2, test_fraction=0.1) == "train"


def test_adding_photos_moves_none_already_there(tmp_path: Path) -> None:
    root = write(tmp_path / "photos", kaggle_files(range(20)))
    before = splits_of(build_manifest(root, **FRACTIONS).manifest)
    write(root, kaggle_files(range(20, 60)))
    after = build_manifest(root, **FRACTIONS)
    assert len(after.manifest) == 120 and set(after.manifest["split"]) == {"train", "validation", "test"}
    assert {path: after_split for path, after_split in splits_of(after.manifest).items()
            if path in before} == before


def test_byte_identical_copies_share_a_split_and_are_counted(tmp_path: Path) -> None:
    files = kaggle_files(range(20))
    files |= {f"copies/cat.{n}.jpg": files[f"train/cat.{n}.jpg"] for n in range(20)}
    result = build_manifest(write(tmp_path, files), **FRACTIONS)
    splits = splits_of(result.manifest)
    assert all(splits[f"copies/cat.{n}.jpg"] == splits[f"train/cat.{n}.jpg"] for n in range(20))
    assert data_metrics(result)["duplicates"]["identical_copies"] == 20


def test_near_identical_photos_land_in_one_split(tmp_path: Path) -> None:
    files = kaggle_files(range(30))
    files |= {f"train/dog.{100 + n}.jpg": near_copy(files[f"train/dog.{n}.jpg"]) for n in range(30)}
    result = build_manifest(write(tmp_path, files), **FRACTIONS)
    splits = splits_of(result.manifest)
    # Each copy has other bytes, so its own hash would often pick another split.
    own = [hash_split(s, **FRACTIONS) for s in result.manifest.set_index("path").loc[
        [f"train/dog.{100 + n}.jpg" for n in range(30)], "sha256"]]
    assert own != [splits[f"train/dog.{n}.jpg"] for n in range(30)]
    assert all(splits[f"train/dog.{100 + n}.jpg"] == splits[f"train/dog.{n}.jpg"] for n in range(30))
    groups = result.duplicates.groupby("group")["path"].apply(set)
    assert sorted(map(sorted, groups)) == sorted(
        sorted([f"train/dog.{n}.jpg", f"train/dog.{100 + n}.jpg"]) for n in range(30))
    # Towards train: a pair whose photos hash to different splits takes the earlier one.
    order = ["train", "validation", "test"]
    for n in range(30):
        hashed = [hash_split(s, **FRACTIONS) for s in result.manifest.set_index("path").loc[
            [f"train/dog.{n}.jpg", f"train/dog.{100 + n}.jpg"], "sha256"]]
        assert splits[f"train/dog.{n}.jpg"] == min(hashed, key=order.index)


def test_near_identical_photos_with_other_labels_are_excluded(tmp_path: Path) -> None:
    files = kaggle_files(range(20))
    banner = photo(999)
    files |= {"train/cat.500.jpg": banner, "train/dog.500.jpg": near_copy(banner),
              "train/dog.501.jpg": banner}
    result = build_manifest(write(tmp_path, files), **FRACTIONS)
    trio = {"train/cat.500.jpg", "train/dog.500.jpg", "train/dog.501.jpg"}
    assert not result.manifest["path"].isin(trio).any()
    excluded = result.excluded.set_index("path")
    assert set(excluded.index) == trio and set(excluded["kind"]) == {"label conflict"}
    assert "train/dog.500.jpg (dog)" in excluded.loc["train/cat.500.jpg", "reason"]
    metrics = data_metrics(result)
    assert metrics["excluded_by_kind"] == {"label conflict": 3}
    assert metrics["duplicates"]["label_conflict_groups"] == 1


def test_unlabelled_and_broken_files_are_excluded_and_counted_by_kind(tmp_path: Path) -> None:
    files = kaggle_files(range(20)) | {"train/notes.txt": b"hello", "train/cat.77.jpg": b"",
                                       "train/IMG_3.jpg": photo(5)}
    result = build_manifest(write(tmp_path, files), **FRACTIONS)
    assert data_metrics(result)["excluded_by_kind"] == {"empty file": 1, "no label": 2}
    with pytest.raises(DataError, match=r"3 file.*left out and split.strict is true.*IMG_3.jpg"):
        build_manifest(tmp_path, strict=True, **FRACTIONS)


def test_several_sources_combine_each_in_its_own_layout(tmp_path: Path, extracted: Path) -> None:
    import shutil

    shutil.copytree(extracted, tmp_path / "tutorial")
    write(tmp_path / "kaggle", kaggle_files(range(20)))
    tutorial_photo = (tmp_path / "tutorial/cats_and_dogs_filtered/validation/cats/cat.2004.jpg")
    (tmp_path / "kaggle/train/cat.900.jpg").write_bytes(near_copy(tutorial_photo.read_bytes()))
    result = build_manifest(tmp_path, sources=["tutorial", "kaggle"], **FRACTIONS)
    metrics = data_metrics(result)
    assert {k: (v["layout"], v["photos"]) for k, v in metrics["sources"].items()} == {
        "tutorial": ("tutorial", 44), "kaggle": ("name_prefix", 41)}
    splits = splits_of(result.manifest)
    # The tutorial's split stands; a near-copy of a tutorial test photo joins it in test.
    assert splits["tutorial/cats_and_dogs_filtered/validation/cats/cat.2004.jpg"] == "test"
    assert splits["kaggle/train/cat.900.jpg"] == "test"
    tutorial = result.manifest[result.manifest["path"].str.startswith("tutorial/")]
    assert tutorial.groupby("split").size().to_dict() == {"test": 4, "train": 24, "validation": 16}


def test_a_source_that_fits_no_layout_is_named(tmp_path: Path, extracted: Path) -> None:
    write(tmp_path / "good", kaggle_files(range(5)))
    write(tmp_path / "odd", {"IMG_1.jpg": photo(1)})
    with pytest.raises(DataError, match="source 'odd': no layout fits"):
        build_manifest(tmp_path, sources=["good", "odd"], **FRACTIONS)


def test_too_few_photos_for_a_split_say_which_setting(tmp_path: Path) -> None:
    write(tmp_path, {"cat.1.jpg": photo(1), "dog.1.jpg": photo(2)})
    with pytest.raises(DataError, match=r"got no .* photos: 1 usable .* of 2, with "
                                        "split.validation_fraction"):
        build_manifest(tmp_path)


def test_a_collection_of_one_class_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {f"cats/{n}.jpg": photo(n) for n in range(40)})
    with pytest.raises(DataError, match="split 'train' got no dog photos: 0 usable dog photo"):
        build_manifest(tmp_path, **FRACTIONS)


def test_the_split_stage_reads_the_sources_from_the_download_record(
    tmp_path: Path, extracted: Path, tracking_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from click.testing import CliRunner
    from conftest import load_stage, tiny_params, write_params

    monkeypatch.chdir(tmp_path)
    shutil.copytree(extracted, tmp_path / "data/raw/tutorial")
    write(tmp_path / "data/raw/mine", {f"Cats/{n}.jpg": photo(n) for n in range(12)}
          | {f"Dogs/{n}.jpg": photo(100 + n) for n in range(12)})
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/download.json").write_text(json.dumps({"sources": [
        {"name": "tutorial", "folder": "tutorial"}, {"name": "mine", "folder": "mine"}]}))
    params = tiny_params()
    params["split"].update(FRACTIONS)
    write_params(tmp_path / "params.yaml", params)
    result = CliRunner().invoke(load_stage("split"), [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "metrics/data.json").read_text())
    assert {k: v["layout"] for k, v in data["sources"].items()} == {
        "tutorial": "tutorial", "mine": "class_folders"}
    manifest = pd.read_csv(tmp_path / "data/split/manifest.csv")
    assert len(manifest) == 44 + 24 and manifest["phash"].str.len().eq(16).all()
    assert "tutorial: tutorial, mine: class_folders" in result.output

    (tmp_path / "metrics/download.json").write_text(json.dumps({"source": "x.zip", "sha256": "0"}))
    result = CliRunner().invoke(load_stage("split"), [])
    assert result.exit_code == 1 and "older download stage" in result.output
    assert "dvc repro download" in result.output
