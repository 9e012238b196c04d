"""`catsdogs predict --server`: photos sent to a served model, as `mlflow models serve` takes them."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import free_port, http_service, tiny_params

from catsdogs.cli import main
from catsdogs.data.images import read_image
from catsdogs.serving import with_probability
from catsdogs.zoo import model_spec

SIZE = 32
# How MLflow 3.17's scoring server refuses an input of the wrong shape (a 400 whose message
# repeats the input first; the shape is in its last line).
MLFLOW_SHAPE_ERROR = ("Failed to predict data '[[[[0. 0. 0.]]]]'. \nError: Failed to enforce "
                      "schema of data '[[[[0. 0. 0.]]]]' with schema '[Tensor('float32', (-1, "
                      "{size}, {size}, 3))]'. Error: Shape of input {shape} does not match expected "
                      "shape (-1, {size}, {size}, 3).")


def brightness(images: np.ndarray) -> list[list[float]]:
    """The stand-in model: P(dog) is the mean pixel value, as MLflow answers, one list per image."""
    return [[float(image.mean()) / 255] for image in images]


class StandIn:
    """An HTTP server on 127.0.0.1 answering /invocations as `mlflow models serve` does for a
    model taking (SIZE, SIZE, 3) images; it keeps every request body it got."""

    def __init__(self, answer: Callable[[np.ndarray], object] = brightness, status: int = 200) -> None:
        self.bodies: list[dict] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.bodies.append(body)
                images = np.asarray(body["inputs"])
                if self.path != "/invocations" or status == 404:
                    self.reply(404, {"detail": "Not Found"})
                elif images.shape[1:] != (SIZE, SIZE, 3):
                    message = MLFLOW_SHAPE_ERROR.format(size=SIZE, shape=images.shape)
                    self.reply(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})
                else:
                    self.reply(200, {"predictions": answer(images)})

            def reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def serve() -> Iterator[Callable[..., StandIn]]:
    servers = []

    def start(**kwargs: object) -> StandIn:
        server = StandIn(**kwargs)
        threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture()
def photos(extracted: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    shutil.copytree(extracted / "cats_and_dogs_filtered/validation", folder)
    return folder


def predict(*args: str):
    return CliRunner().invoke(main, ["predict", *args])


def test_photos_go_in_batches_decoded_as_in_training(serve, photos: Path) -> None:
    server = serve()
    result = predict(str(photos), "--server", server.url, "--batch-size", "8", "--format", "json")
    assert result.exit_code == 0, result.output
    probe, *batches = server.bodies
    assert np.asarray(probe["inputs"]).shape == (1, 1, 1, 3)  # asks the size of the model
    assert all(list(body) == ["inputs"] for body in batches)
    shapes = [np.asarray(body["inputs"]).shape for body in batches]
    assert shapes == [(8, SIZE, SIZE, 3), (8, SIZE, SIZE, 3), (4, SIZE, SIZE, 3)]  # 20 photos
    rows = json.loads(result.stdout)  # one JSON document: an array of verdicts
    assert [Path(r["path"]).parent.name for r in rows] == ["cats"] * 10 + ["dogs"] * 10
    first = read_image(rows[0]["path"], SIZE, max_pixels=None)
    sent = np.asarray(batches[0]["inputs"][0])
    assert sent.dtype.kind == "i" and np.array_equal(sent, first)  # the pixels training sees
    assert rows[0]["probability_dog"] == pytest.approx(first.mean() / 255, abs=1e-6)
    assert all(r["label"] == ("dog" if r["probability_dog"] > 0.5 else "cat") for r in rows)


def test_a_given_size_is_sent_without_asking(serve, photos: Path) -> None:
    server = serve()
    result = predict(str(photos / "cats"), "--server", server.url.removeprefix("http://"),
                     "--image-size", str(SIZE), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [np.asarray(b["inputs"]).shape for b in server.bodies] == [(10, SIZE, SIZE, 3)]
    assert len([json.loads(line) for line in result.stdout.splitlines()]) == 10


def test_the_wrong_size_says_the_right_one(serve, photos: Path) -> None:
    server = serve()
    result = predict(str(photos), "--server", server.url, "--image-size", "64")
    assert result.exit_code == 1
    assert f"takes {SIZE} x {SIZE} px images, not 64 px; pass --image-size {SIZE}" in result.output


def test_no_server_says_how_to_start_one(photos: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = predict(str(photos), "--server", url)
    assert result.exit_code == 1
    assert f"no model server answers at {url}" in result.output
    assert "mlflow models serve -m models:/catsdogs@champion" in result.output


@pytest.mark.parametrize(("answer", "status", "message"), [
    (brightness, 404, "that is not a model server"),
    (lambda images: [[5.0] for _ in images], 200, "outside [0, 1] (a logit"),
    (lambda images: [[0.5, 0.5] for _ in images], 200, "not one probability per image"),
    (lambda images: [[0.5]], 200, "not one probability per image"),
])
def test_a_server_that_answers_oddly_is_named(serve, photos: Path, answer, status: int,
                                              message: str) -> None:
    server = serve(answer=answer, status=status)
    result = predict(str(photos), "--server", server.url, "--image-size", str(SIZE))
    assert result.exit_code == 1 and message in result.output, result.output


def test_server_and_model_are_one_choice(photos: Path) -> None:
    both = predict(str(photos), "--server", "http://127.0.0.1:1", "--model", "models/m1_cnn")
    assert both.exit_code == 2 and "--model and --server each name the model" in both.output
    size_alone = predict(str(photos), "--image-size", "32")
    assert size_alone.exit_code == 2 and "--image-size is for --server" in size_alone.output


@pytest.mark.slow
def test_a_real_mlflow_model_server_answers_as_the_model_does_here(photos: Path, tmp_path: Path) -> None:
    import mlflow.keras
    from mlflow.models import infer_signature

    params = tiny_params()
    model = model_spec(params["models"], next(iter(params["models"]))).build((SIZE, SIZE, 3))
    model.save(tmp_path / "model.keras")
    served = with_probability(model)  # as the train stage logs it
    example = np.zeros((1, SIZE, SIZE, 3), dtype=np.float32)
    mlflow.keras.save_model(served, str(tmp_path / "mlflow_model"),
                            signature=infer_signature(example, served.predict(example, verbose=0)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(tmp_path / "mlflow_model"),
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    with http_service(command, url + "/ping", tmp_path / "serve.log", env=env):
        remote = predict(str(photos), "--server", url, "--format", "csv", "--batch-size", "8")
        wrong = predict(str(photos), "--server", url, "--image-size", "64")
    here = predict(str(photos), "--model", str(tmp_path), "--format", "csv")
    assert remote.exit_code == here.exit_code == 0, remote.output
    a = [line.split(",") for line in remote.stdout.splitlines()[1:]]
    b = [line.split(",") for line in here.stdout.splitlines()[1:]]
    assert len(a) == 20 and [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([float(r[2]) for r in a], [float(r[2]) for r in b], atol=1e-5)
    assert wrong.exit_code == 1
    assert f"takes {SIZE} x {SIZE} px images, not 64 px; pass --image-size {SIZE}" in wrong.output
