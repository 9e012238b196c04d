"""The pretrained stage: each architecture's weights fetched, checked, and a DVC input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import load_stage, project_params, tiny_params, write_params

from catsdogs.core.params import ConfigError
from catsdogs.data.pretrained import (
    NO_WEIGHTS_FILE,
    WEIGHTS_FILE,
    PretrainedSource,
    fetch_pretrained,
    read_pretrained,
)
from catsdogs.data.sources import DownloadError
from catsdogs.zoo.entries import training_job

WEIGHTS = b"not really an HDF5 file, but bytes with a known sha256"
SHA256 = hashlib.sha256(WEIGHTS).hexdigest()


def test_the_recipe_pins_the_224_px_imagenet_file_for_every_transfer_model() -> None:
    params = project_params()
    sources = read_pretrained(params)
    assert sources["cnn"] is None
    keras_file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert sources["transfer"].mirrors[0].endswith(keras_file)
    assert sources["transfer"].sha256 is None  # Keras publishes none: dvc.lock records the file's hash
    transfer = [e for e in params["models"].values() if e["arch"] == "transfer"]
    assert transfer and {e["weights"] for e in transfer} == {f"data/pretrained/transfer/{WEIGHTS_FILE}"}


def test_each_architecture_gets_its_folder(tmp_path: Path) -> None:
    local = tmp_path / "mobilenet.h5"
    local.write_bytes(WEIGHTS)
    sources = {"cnn": None, "transfer": PretrainedSource("transfer", (str(tmp_path / "gone.h5"),
                                                                      local.as_uri()), SHA256)}
    records = fetch_pretrained(sources, tmp_path / "pretrained")
    assert (tmp_path / f"pretrained/transfer/{WEIGHTS_FILE}").read_bytes() == WEIGHTS
    assert "random" in (tmp_path / f"pretrained/cnn/{NO_WEIGHTS_FILE}").read_text()
    assert records == {"cnn": {}, "transfer": {"source": local.as_uri(), "sha256": SHA256,
                                                "size_bytes": len(WEIGHTS)}}


def test_a_file_that_is_not_the_pinned_one_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    local = tmp_path / "other.h5"
    local.write_bytes(WEIGHTS + b"!")
    out = tmp_path / "pretrained"
    (out / "transfer").mkdir(parents=True)
    (out / "transfer" / WEIGHTS_FILE).write_bytes(WEIGHTS)
    with pytest.raises(DownloadError, match=r"sha256 mismatch .* pretrained\.transfer\.sha256"):
        fetch_pretrained({"transfer": PretrainedSource("transfer", (str(local),), SHA256)}, out)
    assert (out / "transfer" / WEIGHTS_FILE).read_bytes() == WEIGHTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.h5", "pretrained"]


def test_no_source_reachable_says_how_to_work_offline(tmp_path: Path) -> None:
    source = PretrainedSource("transfer", (str(tmp_path / "missing.h5"),), SHA256)
    offline = r"(?s)could not fetch the weights for 'transfer'.*dvc commit pretrained"
    with pytest.raises(DownloadError, match=offline):
        fetch_pretrained({"transfer": source}, tmp_path / "pretrained")


@pytest.mark.parametrize(("section", "message"), [
    (None, "needs a 'pretrained' section"),
    ({"transfer": "imagenet"}, "'pretrained.transfer' must be 'none' or"),
    ({"transfer": {"url": "x.h5", "md5": "0"}}, "'pretrained.transfer' must be 'none' or"),
    ({"transfer": {"url": [], "sha256": None}}, "'pretrained.transfer.url' must be"),
    ({"transfer": {"url": "x.h5", "sha256": "abc"}}, "'pretrained.transfer.sha256' must be 64"),
])
def test_bad_settings_name_the_key(section: dict | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_pretrained({"pretrained": section} if section is not None else {})


def test_an_architecture_without_a_pretrained_entry_is_named() -> None:
    params = tiny_params()
    del params["pretrained"]["transfer"]
    with pytest.raises(ConfigError, match=r"models.m4_transfer.arch 'transfer' has no entry in "
                                          r"'pretrained'; add pretrained.transfer: none"):
        training_job(params, "m4_transfer")


def test_the_stage_writes_the_folders_from_params(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "w.h5").write_bytes(WEIGHTS)
    params = tiny_params()
    params["pretrained"] = {"cnn": "none", "transfer": {"url": str(tmp_path / "w.h5"), "sha256": None}}
    write_params(tmp_path / "params.yaml", params)
    result = CliRunner().invoke(load_stage("pretrained"), [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"sha256 {SHA256}; set pretrained.transfer.sha256" in result.output
    assert sorted(p.name for p in (tmp_path / "data/pretrained").iterdir()) == ["cnn", "transfer"]
