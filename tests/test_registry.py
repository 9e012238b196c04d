"""compare, the Model Registry's champion, predict from the registry, and serving it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import free_port, http_service, load_stage, small_params, write_params
from mlflow.tracking import MlflowClient
from test_dvc_deps import SRC, transitive_imports

from catsdogs.cli.main import main as catsdogs_cli

CHAMPION = "models:/catsdogs@champion"


@pytest.fixture(autouse=True)
def _tracking_uri_restored() -> Iterator[None]:
    """MLflow's tracking URI as it was: tests here point it at other stores."""
    import mlflow

    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def invoke(stage: str, *args: str) -> None:
    result = CliRunner().invoke(load_stage(stage), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dataset_zip: Path) -> Iterator[Path]:
    """Two CNNs trained and evaluated, then compared, in one sqlite store."""
    root = tmp_path_factory.mktemp("project")
    params = small_params(dataset_zip, epochs=2)
    params["models"] = {name: entry for name, entry in params["models"].items()
                        if entry["arch"] == "cnn"}  # the small CNNs: quick to train
    params["finetune"] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        write_params(root / "params.yaml", params)
        invoke("download")
        invoke("split")
        for name in params["models"]:
            invoke("train", "--model", name, "--out", f"models/{name}", "--metrics",
                   f"metrics/train/{name}.json", "--history", f"metrics/history/{name}.csv",
                   "--figures", f"plots/train/{name}")
            invoke("evaluate", "--model", name, "--model-dir", f"models/{name}", "--metrics",
                   f"metrics/eval/{name}.json", "--predictions", f"metrics/predictions/{name}.csv",
                   "--figures", f"plots/eval/{name}")
        invoke("compare")
        yield root


def test_leaderboard_and_champion_alias(project: Path) -> None:
    board = pd.read_csv(project / "metrics/leaderboard.csv")
    assert list(board["model"].iloc[-1:]) == ["majority_baseline"]
    names = list(yaml.safe_load((project / "params.yaml").read_text())["models"])
    val = {n: json.loads((project / f"metrics/train/{n}.json").read_text())["val_accuracy"]
           for n in names}
    best = max(sorted(val), key=lambda n: val[n])
    assert board["model"].iloc[0] == best
    assert json.loads((project / "metrics/champion.json").read_text())["model"] == best
    accuracy = json.loads((project / "metrics/accuracy.json").read_text())
    assert accuracy[best]["val_accuracy"] == pytest.approx(val[best]) and set(accuracy) == set(names)
    version = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_model_version_by_alias(
        "catsdogs", "champion")
    assert version.run_id == (project / f"models/{best}/mlflow_run_id").read_text().strip()
    # The version takes photos: a pyfunc around the Keras model the train stage logged, linked
    # to the same training run.
    model_id = (project / f"models/{best}/mlflow_model_id").read_text().strip()
    photo_model_id = version.source.removeprefix("models:/")
    assert version.tags["catsdogs.keras_model_id"] == model_id != photo_model_id
    assert version.tags["catsdogs.takes"] == "photos"
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_logged_model(photo_model_id).source_run_id == version.run_id
    assert f"version {version.version}" in (project / "reports/leaderboard.md").read_text()
    curves = pd.read_csv(project / "metrics/curves.csv")
    assert set(curves["model"]) == set(names) and list(curves["epoch"][:2]) == [1, 2]


def test_predict_from_the_registry_matches_the_model_folder(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    photos = str(project / "data/raw/cats_and_dogs_filtered/validation")
    runner = CliRunner()
    from_registry = runner.invoke(catsdogs_cli, ["predict", photos, "--model", CHAMPION, "--format", "csv"])
    from_folder = runner.invoke(catsdogs_cli,
                                ["predict", photos, "--model", f"models/{best}", "--format", "csv"])
    assert from_registry.exit_code == from_folder.exit_code == 0, from_registry.output
    a = [r.split(",") for r in from_registry.stdout.splitlines()[1:]]
    b = [r.split(",") for r in from_folder.stdout.splitlines()[1:]]
    assert len(a) == 20 and [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([float(r[2]) for r in a], [float(r[2]) for r in b], atol=1e-6)


def local_verdicts(project: Path, photos: list[Path]) -> dict[str, tuple[str, float]]:
    """`catsdogs predict` with the champion's model folder: (label, P(dog)) per photo path."""
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    result = CliRunner().invoke(catsdogs_cli, ["predict", *map(str, photos), "--model",
                                               str(project / "models" / best), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    return {path: (label, float(p)) for path, label, p in rows}


def use_store(project: Path, monkeypatch) -> None:
    """The module's store, for MLflow calls made here (another test may have set another)."""
    from catsdogs.tracking.store import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    connect()


def validation_photos(project: Path) -> list[Path]:
    return sorted((project / "data/raw/cats_and_dogs_filtered/validation").rglob("*.jpg"))


def test_the_registered_model_takes_photos_decoded_as_predict_decodes_them(project: Path,
                                                                           monkeypatch) -> None:
    import mlflow.pyfunc

    use_store(project, monkeypatch)
    photos = validation_photos(project)
    served = mlflow.pyfunc.load_model(CHAMPION)
    answers = served.predict(pd.DataFrame({"image": [p.read_bytes() for p in photos]}))
    assert list(answers.columns) == ["label", "probability_dog"] and len(answers) == 20
    here = local_verdicts(project, photos)
    assert list(answers["label"]) == [here[str(p)][0] for p in photos]
    np.testing.assert_allclose(answers["probability_dog"], [here[str(p)][1] for p in photos],
                               atol=1e-6)
    # Its signature and input example say what it takes: one column of photos, in base64.
    info = mlflow.models.get_model_info(CHAMPION)
    assert info.signature.inputs.to_dict() == [{"type": "binary", "name": "image",
                                                "required": True}]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["label", "probability_dog"]
    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION))
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image"]


def third_party_imports(module: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"catsdogs", "__future__"}


def test_the_registered_model_carries_its_code_and_declares_its_requirements(
        project: Path, tmp_path: Path, monkeypatch) -> None:
    import subprocess
    from importlib.metadata import packages_distributions

    import mlflow.artifacts
    from packaging.utils import canonicalize_name

    use_store(project, monkeypatch)
    folder = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path)))
    # Loaded where the catsdogs package is not installed, it runs its own copy of the code.
    photo = validation_photos(project)[0]
    script = ("import os, sys\n"
              "sys.path = [p for p in sys.path if not os.path.isdir(p + '/catsdogs')]\n"
              "import mlflow.pyfunc, pandas\n"
              f"model = mlflow.pyfunc.load_model({str(folder)!r})\n"
              f"photos = pandas.DataFrame({{'image': [open({str(photo)!r}, 'rb').read()]}})\n"
              "print(model.predict(photos).iloc[0].label)\n"
              "print(sys.modules['catsdogs.inference.photo_pyfunc'].__file__)\n")
    probe = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    label, module = probe.stdout.split()[-2:]
    assert label in ("cat", "dog") and Path(module).is_relative_to(folder / "code")
    # Its requirements pin every package the code it runs imports (a module some packages
    # share, as mlflow's three do, by any of them).
    required = {canonicalize_name(line.split("==")[0]) for line in
                (folder / "requirements.txt").read_text().split() if "==" in line}
    carried = folder / "code/catsdogs"
    # The modules the photo model runs: its own and what it imports, as the source has them.
    runs = {SRC / "catsdogs/inference/photo_pyfunc.py"} | transitive_imports(
        SRC / "catsdogs/inference/photo_pyfunc.py")
    modules = {str(path.relative_to(SRC / "catsdogs")) for path in runs}
    assert {"inference/predict.py", "models/model_file.py", "data/images.py"} <= modules
    distributions = packages_distributions()
    imported = set().union(*(third_party_imports(carried / m) for m in modules))
    undeclared = {name for name in imported
                  if not {canonicalize_name(d) for d in distributions[name]} & required}
    assert undeclared == set(), undeclared
    assert {"tensorflow", "keras", "mlflow", "pillow", "pyyaml"} <= required


def test_compare_again_registers_no_new_version(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    before = client.get_model_version_by_alias("catsdogs", "champion")
    versions = len(client.search_model_versions("name='catsdogs'"))
    compare_in(project, yaml.safe_load((project / "params.yaml").read_text()))
    assert len(client.search_model_versions("name='catsdogs'")) == versions
    assert client.get_model_version_by_alias("catsdogs", "champion").version == before.version


def test_a_champion_that_takes_arrays_gives_its_alias_to_its_photo_model(
        project: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    from catsdogs.tracking import logged_models, photo_model, registry
    from catsdogs.tracking.store import connect

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shutil.copy(project / "mlflow.db", tmp_path / "mlflow.db")  # the module's store, aside
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    connect(store)
    client = MlflowClient(store)
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    keras_id = (project / f"models/{best}/mlflow_model_id").read_text().strip()
    champion = client.get_model_version_by_alias("catsdogs", "champion")
    # A store from before photo serving: the champion is the Keras model itself, and no
    # version wraps it yet.
    client.delete_model_version("catsdogs", champion.version)
    tags = {k: v for k, v in champion.tags.items()
            if k not in (photo_model.TAKES_TAG, logged_models.KERAS_MODEL_TAG)}
    old = registry.register_candidate(keras_id, tags, promote=True)
    assert not photo_model.takes_photos(CHAMPION)
    page = compare_in(project, yaml.safe_load((project / "params.yaml").read_text()))
    now = client.get_model_version_by_alias("catsdogs", "champion")
    assert str(now.version) != old.version and photo_model.takes_photos(CHAMPION)
    assert (f"alias `champion`: the champion's own model (version {old.version}), now taking "
            "photos") in page
    # A champion taking arrays that is another model, with the same score on the same photos:
    # the photo model, as good, takes the alias; a better one would anyway.
    other = next(n for n in yaml.safe_load((project / "params.yaml").read_text())["models"]
                 if n != best)
    other_id = (project / f"models/{other}/mlflow_model_id").read_text().strip()
    tied = registry.register_candidate(other_id, {**tags, "model_name": other}, promote=True)
    page = compare_in(project, yaml.safe_load((project / "params.yaml").read_text()))
    assert photo_model.takes_photos(CHAMPION)
    assert (f"it takes photos and is as good as the champion, version {tied.version}, which takes "
            "arrays, on the same validation photos") in page


def test_unknown_registry_model_is_a_clear_error(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    result = CliRunner().invoke(catsdogs_cli, ["predict", str(project), "--model", "models:/nope@champion"])
    assert result.exit_code == 2 and "cannot load models:/nope@champion" in result.output


def post(url: str, body: bytes) -> tuple[int, dict]:
    """POST `body` to the server's /invocations; (HTTP status, the JSON answer)."""
    request = urllib.request.Request(url + "/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def photos_json(*photos: bytes, column: str = "image") -> bytes:
    """What curl sends for `printf '{"dataframe_split": ...}' "$(base64 -w0 photo.jpg)"`."""
    rows = ",".join(f'["{base64.b64encode(p).decode()}"]' for p in photos)
    return f'{{"dataframe_split": {{"columns": ["{column}"], "data": [{rows}]}}}}'.encode()


@pytest.mark.slow
def test_served_champion_takes_photos_and_refuses_bad_requests(project: Path, tmp_path: Path) -> None:
    from test_images import bomb_png

    from catsdogs.inference.photo_pyfunc import MAX_PHOTOS_PER_REQUEST

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    photos = validation_photos(project)
    here = local_verdicts(project, photos)
    jpeg = photos[0].read_bytes()
    bad_requests = {
        "not base64": (b'{"dataframe_split": {"columns": ["image"], "data": [["not base64!!"]]}}',
                       "Invalid base64-encoded string"),
        "not an image": (photos_json(b"plain text, not a photo"),
                         "photo 0: not a decodable image (no image format recognised)"),
        # Cut within its header, as the small test photos are, or within its pixels.
        "truncated": (photos_json(jpeg, jpeg[: len(jpeg) // 2]), "photo 1: "),
        "decompression bomb": (photos_json(bomb_png(tmp_path / "bomb.png").read_bytes()),
                               "photo 0: 15000 x 15000 = 225,000,000 pixels, over the limit"),
        "empty batch": (b'{"dataframe_split": {"columns": ["image"], "data": []}}',
                        "an empty batch: send at least one photo in column 'image'"),
        "over the cap": (photos_json(*[jpeg] * (MAX_PHOTOS_PER_REQUEST + 1)),
                         f"{MAX_PHOTOS_PER_REQUEST + 1} photos in one request, over the cap of "
                         f"{MAX_PHOTOS_PER_REQUEST}"),
        "wrong column": (photos_json(jpeg, column="photo"), "Model is missing inputs ['image']"),
    }
    with http_service(command, url + "/ping", project / "serve.log", env=env, cwd=project):
        # One photo a request, as curl sends it: the request is the photo in base64, and the
        # answer is `catsdogs predict`'s.
        for photo in photos:
            body = photos_json(photo.read_bytes())
            assert len(body) < 4 * -(-photo.stat().st_size // 3) + 60
            status, answer = post(url, body)
            assert status == 200, answer
            [verdict] = answer["predictions"]
            assert verdict["label"] == here[str(photo)][0]
            assert verdict["probability_dog"] == pytest.approx(here[str(photo)][1], abs=1e-6)
        for name, (body, reason) in bad_requests.items():
            status, answer = post(url, body)
            assert status == 400 and reason in answer["message"], (name, status, answer)
            if name == "truncated":
                assert "truncated" in answer["message"].lower(), answer
        # Still serving, and `catsdogs predict --server` names the file it refuses.
        status, answer = post(url, photos_json(jpeg))
        assert status == 200 and answer["predictions"][0]["label"] == here[str(photos[0])][0]
        folder = tmp_path / "photos"
        shutil.copytree(project / "data/raw/cats_and_dogs_filtered/validation", folder)
        (folder / "cats/cat.9999.jpg").write_bytes(b"plain text, not a photo")
        remote = CliRunner().invoke(catsdogs_cli, ["predict", str(folder), "--server", url,
                                                   "--format", "csv"])
    assert remote.exit_code == 0, remote.output
    rows = [line.split(",") for line in remote.stdout.splitlines()[1:]]
    original = project / "data/raw/cats_and_dogs_filtered/validation"
    expected = [here[str(original / Path(r[0]).relative_to(folder))] for r in rows]
    assert [r[1] for r in rows] == [label for label, _ in expected] and len(rows) == 20
    np.testing.assert_allclose([float(r[2]) for r in rows], [p for _, p in expected], atol=1e-6)
    assert "cat.9999.jpg: not a decodable image" in remote.stderr


def compare_in(project: Path, params: dict, *args: str, manifest: str = "data/split/manifest.csv",
               env: dict[str, str] | None = None) -> str:
    """Run compare on `params` (a subset of the zoo) with its outputs aside; its report."""
    side = project / "side"
    side.mkdir(exist_ok=True)
    write_params(side / "params.yaml", params)
    result = CliRunner().invoke(load_stage("compare"), [
        "--params", str(side / "params.yaml"), "--out", str(side / "leaderboard.csv"),
        "--accuracy", str(side / "accuracy.json"), "--curves", str(side / "curves.csv"),
        "--report", str(side / "leaderboard.md"), "--champion", str(side / "champion.json"),
        "--machines", str(side / "machines.json"), "--manifest", manifest, *args],
        env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return (side / "leaderboard.md").read_text()


def test_only_a_better_model_on_the_same_photos_takes_the_champion_alias(project: Path,
                                                                          monkeypatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    params = yaml.safe_load((project / "params.yaml").read_text())
    best = json.loads((project / "metrics/champion.json").read_text())["model"]
    val = {n: json.loads((project / f"metrics/train/{n}.json").read_text())["val_accuracy"]
           for n in params["models"]}
    worse = min(sorted(val), key=lambda n: val[n])
    alone = {**params, "models": {worse: params["models"][worse]}}

    def holder(alias: str) -> str:
        version = client.get_model_version_by_alias("catsdogs", alias)
        return version.tags["model_name"]

    # An experiment (inside `dvc exp run`) registers nothing, whatever it scored.
    versions = len(client.search_model_versions("name='catsdogs'"))
    page = compare_in(project, alone, env={"DVC_EXP_NAME": "exp-1"})
    assert "Not registered (inside `dvc exp run` (exp-1))" in page
    assert len(client.search_model_versions("name='catsdogs'")) == versions

    # The worse model, registered: it waits as the challenger; the champion stays.
    page = compare_in(project, alone)
    assert (holder("champion"), holder("challenger")) == (best, worse)
    assert "alias `challenger`: it does not beat the champion" in page
    reason = client.get_model_version_by_alias("catsdogs", "challenger").tags["catsdogs.alias_reason"]
    assert reason.startswith("challenger: it does not beat the champion")

    # Measured on other validation photos, even a better score would not be compared.
    rows = pd.read_csv(project / "data/split/manifest.csv")
    dropped = rows.drop(index=rows.index[rows["split"] == "validation"][0])
    dropped.to_csv(project / "side/manifest.csv", index=False)
    page = compare_in(project, alone, manifest="side/manifest.csv")
    assert holder("champion") == best and "not comparable with the champion" in page

    # Promoted on purpose, the worse one takes it; the better one then wins it back.
    compare_in(project, alone, "--promote")
    assert holder("champion") == worse
    page = compare_in(project, params)
    if val[best] > val[worse]:
        assert holder("champion") == best and "alias `champion`: it beats the champion" in page
    else:  # the tiny data set gave them the same score: a tie keeps the champion
        assert holder("champion") == worse and "a tie keeps the champion" in page
