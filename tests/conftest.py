"""Shared fixtures: a tiny synthetic data set shaped like cats_and_dogs_filtered.

Cats are bright images, dogs dark ones, each with noise and a random square, so that even a
one-epoch CNN can tell them apart while the files are real JPEGs of varied content.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    rng = np.random.default_rng(hash((label, index)) % 2**32)
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


def small_params(dataset_zip: Path, **train: int) -> dict:
    """params.yaml with test-sized settings: the synthetic zip, 32 px, 1 epoch, no downloads."""
    import yaml

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["download"]["url"] = dataset_zip.as_uri()
    params["train"].update({"image_size": 32, "batch_size": 8, "epochs": 1, **train})
    params["models"]["m4_transfer"]["weights"] = "none"
    params["finetune"]["m5_finetune"]["epochs"] = 1
    return params


def vivid_transfer(entry: dict, input_shape: tuple[int, int, int] = (32, 32, 3), seed: int = 0):
    """A transfer model whose random base gives features that differ from image to image.

    MobileNetV2's own random initialisation (weights: none) shrinks 32 px images to
    near-constant features, which would hide a wrong feature from a test.
    """
    from catsdogs.models import BASE_NAME, model_spec

    model = model_spec({"transfer": dict(entry, weights="none")}, "transfer").build(input_shape)
    rng = np.random.default_rng(seed)
    for weight in model.get_layer(BASE_NAME).weights:
        values = rng.normal(0.0, 0.5, weight.shape)
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values.astype("float32"))
    return model


def write_params(path: Path, params: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


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

    If it exits or does not answer within `timeout_s`, fail with the end of its log.
    """
    import subprocess
    import time
    import urllib.request

    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
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
            proc.terminate()
            proc.wait(timeout=30)
