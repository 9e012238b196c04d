"""`catsdogs predict --server`: photo files sent to a served model, as `mlflow models serve` takes them."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import free_port

from catsdogs.cli.main import main
from catsdogs.data.images import ImageRefused, read_image
from catsdogs.inference.photo_pyfunc import MAX_PHOTOS_PER_REQUEST
from catsdogs.inference.server_client import request_body

SIZE = 32
# How MLflow 3.17's scoring server refuses a column of photos sent to a model of arrays.
MLFLOW_ARRAYS_ERROR = ("Invalid input. Data is not compatible with model signature. Failed to "
                       "convert column image to type 'float32'. Error: 'ValueError(\"could not "
                       "convert string to float: '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDA\")'")


def brightness(images: np.ndarray) -> list[dict]:
    """The stand-in model: P(dog) is the mean pixel value, one record per photo."""
    return [{"label": "dog" if image.mean() > 127.5 else "cat",
             "probability_dog": float(image.mean()) / 255} for image in images]


class StandIn:
    """An HTTP server on 127.0.0.1 answering /invocations as `mlflow models serve` does for
    the registered photo model: it decodes each base64 photo at SIZE px, refuses one it
    cannot read (a 400 naming the photo, MLflow's way), and keeps every request body."""

    def __init__(self, answer: Callable[[np.ndarray], object] = brightness, status: int = 200,
                 message: str | None = None) -> None:
        self.bodies: list[bytes] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.bodies.append(raw)
                if self.path != "/invocations" or status == 404:
                    return self.reply(404, {"detail": "Not Found"})
                if message is not None:
                    return self.reply(status, {"error_code": "BAD_REQUEST", "message": message})
                rows = json.loads(raw)["dataframe_split"]["data"]
                try:
                    images = np.stack([read_image(f"photo {i}", SIZE, max_pixels=None,
                                                  data=base64.b64decode(row[0]))
                                       for i, row in enumerate(rows)])
                except ImageRefused as refused:
                    return self.reply(400, {"error_code": "INVALID_PARAMETER_VALUE", "message":
                                            f"Failed to predict data '...'. \nError: {refused}"})
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

    def photos_sent(self) -> list[list[bytes]]:
        """Per request, the photo files it carried."""
        return [[base64.b64decode(row[0]) for row in json.loads(body)["dataframe_split"]["data"]]
                for body in self.bodies]


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


def test_photos_go_as_their_files_in_batches(serve, photos: Path) -> None:
    server = serve()
    result = predict(str(photos), "--server", server.url, "--batch-size", "8", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # one JSON document: an array of verdicts
    assert [Path(r["path"]).parent.name for r in rows] == ["cats"] * 10 + ["dogs"] * 10
    sent = server.photos_sent()
    assert [len(batch) for batch in sent] == [8, 8, 4]  # 20 photos
    files = [Path(r["path"]).read_bytes() for r in rows]
    assert [photo for batch in sent for photo in batch] == files  # the files, as they are
    body = json.loads(server.bodies[0])
    assert list(body) == ["dataframe_split"] and body["dataframe_split"]["columns"] == ["image"]
    # A request is the photos' size in base64 (4 bytes for 3), not their pixels.
    base64_size = sum(4 * -(-len(f) // 3) for f in files[:8])
    assert base64_size < len(server.bodies[0]) < base64_size + 200
    first = read_image(rows[0]["path"], SIZE, max_pixels=None)
    assert rows[0]["probability_dog"] == pytest.approx(first.mean() / 255, abs=1e-6)
    assert all(r["label"] == ("dog" if r["probability_dog"] > 0.5 else "cat") for r in rows)


def test_a_photo_the_server_refuses_is_named_and_the_others_classified(serve, photos: Path) -> None:
    (photos / "cats" / "cat.2999.jpg").write_text("not a photo")
    server = serve()
    result = predict(str(photos), "--server", server.url, "--batch-size", "8", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 + 20  # header, every good photo
    assert ("skipped " + str(photos / "cats" / "cat.2999.jpg") + ": not a decodable image "
            "(no image format recognised)") in result.stderr
    # The refused batch went again one photo at a time; the others were sent once each.
    sizes = [len(batch) for batch in server.photos_sent()]
    refused = sizes.index(1) - 1
    assert sizes[refused] == 8 and sizes[refused + 1:refused + 9] == [1] * 8
    assert sum(sizes) == 21 + 8 and sizes.count(1) == 8


def test_the_request_body_is_what_curl_and_base64_send(tmp_path: Path) -> None:
    photo = b"\xff\xd8\xff\xe0 a JPEG's first bytes"
    assert json.loads(request_body([photo])) == {"dataframe_split": {
        "columns": ["image"], "data": [[base64.b64encode(photo).decode()]]}}


def test_no_server_says_how_to_start_one(photos: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = predict(str(photos), "--server", url)
    assert result.exit_code == 1
    assert f"no model server answers at {url}" in result.output
    assert "mlflow models serve -m models:/catsdogs@champion" in result.output


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"status": 404}, "that is not a model server"),
    ({"answer": lambda images: [{"label": "dog", "probability_dog": 5.0} for _ in images]},
     "probabilities outside [0, 1]"),
    ({"answer": lambda images: [[0.5] for _ in images]}, "not a label and a probability"),
    ({"answer": lambda images: [{"label": "dog", "probability_dog": 0.5}]},
     "not a label and a probability for each of 10 photo(s)"),
    ({"status": 400, "message": MLFLOW_ARRAYS_ERROR}, "takes arrays of pixels, not photos"),
    ({"status": 504, "message": "Request processing time exceeded limit"},
     "refused the photos (HTTP 504: Request processing time exceeded limit)"),
])
def test_a_server_that_answers_oddly_is_named(serve, photos: Path, kwargs: dict,
                                              message: str) -> None:
    server = serve(**kwargs)
    result = predict(str(photos / "cats"), "--server", server.url)
    assert result.exit_code == 1 and message in result.output, result.output


def test_a_batch_over_the_servers_cap_is_refused_before_sending(photos: Path) -> None:
    result = predict(str(photos), "--server", "http://127.0.0.1:1",
                     "--batch-size", str(MAX_PHOTOS_PER_REQUEST + 1))
    assert result.exit_code == 2
    assert f"over the served model's cap of {MAX_PHOTOS_PER_REQUEST}" in result.output
    assert f"cap of {MAX_PHOTOS_PER_REQUEST})" in CliRunner().invoke(main, ["predict", "--help"]).output


def test_server_and_model_are_one_choice(photos: Path) -> None:
    both = predict(str(photos), "--server", "http://127.0.0.1:1", "--model", "models/m1_cnn")
    assert both.exit_code == 2 and "--model and --server each name the model" in both.output
    cap = predict(str(photos), "--server", "http://127.0.0.1:1", "--max-pixels", "100")
    assert cap.exit_code == 2
    assert "--max-pixels is for a model folder decoded here: a served model applies" in cap.output
