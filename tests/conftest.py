"""Shared fixtures: a tiny synthetic data set shaped like cats_and_dogs_filtered.

Cats are bright images, dogs dark ones, each with noise and a random square, so that even a
one-epoch CNN can tell them apart while the files are real JPEGs of varied content.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOP = "cats_and_dogs_filtered"
# Per class: train images, validation images (every 5th of validation becomes test).
COUNTS = {"train": 12, "validation": 10}
NUMBERING = {"train": 0, "validation": 2000}


def jpeg_bytes(label: str, index: int, size: int = 32) -> bytes:
    """One synthetic JPEG: bright for cats, dark for dogs, deterministic per (label, index)."""
    # crc32, not hash(): str hashes change with each process, and so would every image.
    rng = np.random.default_rng(zlib.crc32(f"{label}.{index}".encode()))
    base = 190 if label == "cat" else 60
    pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255)
    x, y = rng.integers(0, size - 8, 2)
    pixels[y : y + 8, x : x + 8] = rng.integers(0, 255, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype("uint8")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_dataset_zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Write a synthetic cats_and_dogs_filtered zip; `extra` adds {archive name: bytes}."""
    with zipfile.ZipFile(path, "w") as zf:
        for split, count in COUNTS.items():
            for folder, label in (("cats", "cat"), ("dogs", "dog")):
                for i in range(count):
                    number = NUMBERING[split] + i
                    name = f"{TOP}/{split}/{folder}/{label}.{number}.jpg"
                    zf.writestr(name, jpeg_bytes(label, number))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: across pytest-xdist's workers the longest ones then start at
    once, instead of one of them running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic data set zip, built once per test session."""
    return write_dataset_zip(tmp_path_factory.mktemp("zip") / "cats_and_dogs_filtered.zip")


@pytest.fixture(scope="session")
def extracted(tmp_path_factory: pytest.TempPathFactory, dataset_zip: Path) -> Path:
    """The synthetic data set extracted: the folder holding cats_and_dogs_filtered/."""
    out = tmp_path_factory.mktemp("raw")
    with zipfile.ZipFile(dataset_zip) as zf:
        zf.extractall(out)
    return out


@pytest.fixture()
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow at a fresh sqlite store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def load_stage(name: str):
    """The click command of `stages/<name>.py` (stages are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", PROJECT_ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# Test sizes: the train section's image size, and the size given to zoo entries that set
# their own (different, so a model's own size is exercised).
TINY_SIZE = 32
TINY_ENTRY_SIZE = 48


def project_params() -> dict:
    """params.yaml as committed."""
    import yaml

    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def zoo_entries(params: dict) -> dict[str, dict]:
    """Every zoo entry of `params`, `models` and `finetune` alike, by name."""
    return {**(params.get("models") or {}), **(params.get("finetune") or {})}


def tiny_params(**train: int) -> dict:
    """params.yaml, test-sized: 32 px, batch 8, 1 epoch, random transfer weights (no download).

    Read from the zoo as committed: whatever entries it holds, each gets test-sized
    settings where it sets its own (epochs 1; image size TINY_ENTRY_SIZE).
    """
    params = project_params()
    # Every architecture starts from random weights: nothing to fetch.
    params["pretrained"] = dict.fromkeys(params["pretrained"], "none")
    params["train"].update({"image_size": TINY_SIZE, "batch_size": 8, "epochs": 1, **train})
    for entry in zoo_entries(params).values():
        if "weights" in entry:
            entry["weights"] = "none"
        if "epochs" in entry:
            entry["epochs"] = 1
        if "image_size" in entry:
            entry["image_size"] = TINY_ENTRY_SIZE
    return params


def small_params(dataset_zip: Path, **train: int) -> dict:
    """tiny_params() downloading the synthetic zip."""
    params = tiny_params(**train)
    params["download"]["url"] = dataset_zip.as_uri()
    return params


def build_vivid_transfer(
    input_shape: tuple[int, int, int],
    *,
    pooling: str = "max",
    dense_units: int = 128,
    dropout: float = 0.2,
    flip: str = "none",
    rotation: float = 0.0,
    seed: int = 0,
):
    """A transfer model whose random base gives features that differ from image to image.

    MobileNetV2's own random initialisation (weights: none) shrinks 32 px images to
    near-constant features, which would hide a wrong feature from a test. Registered as
    an architecture by the tests that use it (`vivid_zoo`).
    """
    from catsdogs.models.architectures import BASE_LAYER, build_transfer

    model = build_transfer(input_shape, weights="none", pooling=pooling, dense_units=dense_units,
                           dropout=dropout, flip=flip, rotation=rotation)
    rng = np.random.default_rng(seed)
    for weight in model.get_layer(BASE_LAYER).weights:
        values = rng.normal(0.0, 0.5, weight.shape)
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values.astype("float32"))
    return model


@pytest.fixture()
def vivid_zoo(monkeypatch: pytest.MonkeyPatch) -> str:
    """The architecture `vivid_transfer` registered for one test; returns its name."""
    from catsdogs.models.architectures import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "vivid_transfer", build_vivid_transfer)
    return "vivid_transfer"


def vivid_transfer(entry: dict, input_shape: tuple[int, int, int] = (TINY_SIZE, TINY_SIZE, 3),
                   seed: int = 0):
    """build_vivid_transfer with a transfer zoo entry's head settings."""
    settings = {k: entry[k] for k in ("pooling", "dense_units", "dropout", "flip", "rotation")
                if k in entry}
    return build_vivid_transfer(input_shape, seed=seed, **settings)


def transfer_entry(params: dict) -> tuple[str, dict]:
    """The first `models` entry whose architecture is transfer: (name, entry)."""
    return next((name, entry) for name, entry in params["models"].items()
                if entry["arch"] == "transfer")


def write_params(path: Path, params: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_zoo(repo: Path, params: dict) -> Path:
    """params.yaml and, as `catsdogs zoo-stages` writes it, the stage list dvc.yaml follows."""
    from catsdogs.zoo.stages import ZOO_STAGES_FILE, render

    (repo / ZOO_STAGES_FILE).write_text(render(params))
    return write_params(repo / "params.yaml", params)


def another_kind_of_cpu() -> tuple[str, str]:
    """(ONEDNN_MAX_CPU_ISA value, the instruction set oneDNN then uses) that makes this machine
    compute as another kind of CPU does: AVX2 where the host offers more (as CI's AVX-512
    hosts do), else SSE4.1, so that the fingerprint differs on an AVX2-only runner too."""
    from catsdogs.core.machine import _cpuinfo, onednn_isa

    _, flags = _cpuinfo()
    native = onednn_isa(flags, environ={})
    cap = "avx2" if native not in ("avx2", "avx", "sse41", "baseline") else "sse41"
    assert onednn_isa(flags, environ={"ONEDNN_MAX_CPU_ISA": cap}) != native, (native, cap)
    return cap.upper(), cap


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def http_service(command: list[str], ready_url: str, log_path: Path, timeout_s: float = 120,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[None]:
    """Run a server process until `ready_url` answers; stop it afterwards.

    If it exits or does not answer within `timeout_s`, fail with the end of its log. Stopped,
    the whole process group goes: an `mlflow server` runs uvicorn workers and job runners
    that outlive it when only it is signalled, and on a busy machine can take over 30 s.
    """
    import signal
    import subprocess
    import time
    import urllib.request

    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(ready_url, timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(log_path.read_text()[-3000:]) from None
                    time.sleep(0.5)
            yield
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            with suppress(ProcessLookupError):  # what is left of the group, hung or slow
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def tool_env() -> dict[str, str]:
    """This interpreter's tools first on PATH, and MLflow's default store: <repo>/mlflow.db."""
    import sys

    variables = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                 "PYTHONUNBUFFERED": "1"}
    variables.pop("MLFLOW_TRACKING_URI", None)
    return variables


def sh(cwd: Path, *args: str) -> str:
    """Run a command in `cwd`; fail the test with its output when it fails; return stdout+err."""
    import subprocess

    result = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def commit(repo: Path, message: str) -> str:
    """Commit everything in `repo`; return the commit id."""
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return sh(repo, "git", "rev-parse", "HEAD").strip()


def make_project(repo: Path, params: dict) -> Path:
    """A git + DVC repository holding this project's pipeline with `params`, committed."""
    import shutil

    repo.mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", "profiles.yaml"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    for folder in ("stages", "src"):
        shutil.copytree(PROJECT_ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_zoo(repo, params)
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", repo / ".dvc/plots")  # the plot templates
    commit(repo, "init")
    return repo


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a temporary sqlite store and artifact root."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    with http_service(command, uri + "/health", tmp_path / "server.log"):
        yield uri
