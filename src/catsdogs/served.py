"""A model served over HTTP by `mlflow models serve`: the image size it takes, and P(dog).

Talks to the server's scoring endpoint, `<server>/invocations`: posts `{"inputs": images}`,
a batch of uint8 RGB images as nested lists in the shape the logged model's signature names
(n, size, size, 3), and reads `{"predictions": [[p], ...]}`, the probability of dog per
image (the registered model ends in a sigmoid: `serving.with_probability`). The image size
is not among what the server publishes, so `ask_input_size` learns it from the server's
refusal of a one-pixel image. Whatever goes wrong (no server there, not a model server, a
model taking another size, an answer that is not probabilities) is a ServerError saying what
to do. Uses only the standard library: sending photos need not start TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request

import numpy as np

from catsdogs.errors import UserError
from catsdogs.predict import Scorer

# How the README starts a server for the champion; error messages offer it.
SERVE_COMMAND = "mlflow models serve -m models:/catsdogs@champion --env-manager local -p 5001"
# A batch of 64 photos at 224 px on 2 CPU cores answers in well under a minute; a server that
# has not answered in this long is stuck, not busy.
REQUEST_TIMEOUT_S = 300
# MLflow's words when an input's shape is not the signature's (mlflow.models.utils).
_EXPECTED_SHAPE = re.compile(r"expected shape \(-1, (\d+), (\d+), 3\)")


class ServerError(UserError):
    """A model server that cannot be reached or does not answer as a served catsdogs model."""


class _Refused(Exception):
    """The server answered with an HTTP error: its status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def base_url(server: str) -> str:
    """The server's address as `http://host:port`, from what a user types: a bare
    host:port, a trailing slash, or the /invocations address itself."""
    url = server.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix("/invocations")


def _server_message(body: bytes) -> str:
    """The useful part of an error body: MLflow's `message` (whose first lines repeat the
    whole input), its last line, at most 300 characters."""
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError, AttributeError):  # not JSON, or not an object
        text = str(json.loads(text).get("message", text))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "(no message)")[-300:]


def _post(server: str, images: np.ndarray) -> object:
    """POST images to <server>/invocations; the decoded JSON answer. _Refused for an HTTP
    error, ServerError when nothing answers."""
    url = f"{server}/invocations"
    body = json.dumps({"inputs": images.tolist()}, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            answer = response.read()
    except urllib.error.HTTPError as error:
        raise _Refused(error.code, _server_message(error.read())) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise ServerError(
            f"no model server answers at {server} ({reason}); start one with `{SERVE_COMMAND}` "
            "and wait for 'Uvicorn running', or pass --server with its address") from None
    try:
        return json.loads(answer)
    except ValueError:
        raise ServerError(f"{url} answered something that is not JSON ({answer[:80]!r}); "
                          f"is it a model server started with `{SERVE_COMMAND}`?") from None


def _not_a_model_server(server: str, refused: _Refused) -> ServerError:
    return ServerError(
        f"{server}/invocations answered {refused}; that is not a model server (mlflow ui's "
        f"address is not one): start one with `{SERVE_COMMAND}` and pass its address")


def ask_input_size(server: str) -> int:
    """The image size (pixels a side) the served model takes, learnt from how the server
    refuses a one-pixel image. ServerError when it cannot be learnt."""
    try:
        _post(server, np.zeros((1, 1, 1, 3), dtype=np.uint8))
    except _Refused as refused:
        if refused.status in (404, 405):
            raise _not_a_model_server(server, refused) from None
        match = _EXPECTED_SHAPE.search(refused.message)
        if match and match[1] == match[2]:
            return int(match[1])
        raise ServerError(f"could not learn the image size the model at {server} takes (it "
                          f"answered {refused}); pass --image-size") from None
    raise ServerError(f"the model at {server} took a one-pixel image, so it does not say the "
                      "size it takes; pass --image-size")


def server_scorer(server: str, size: int) -> Scorer:
    """P(dog) for a batch of (n, size, size, 3) uint8 images, from the model served at
    `server`. ServerError names what to do when the server refuses or answers oddly."""
    def score(images: np.ndarray) -> np.ndarray:
        try:
            answer = _post(server, images)
        except _Refused as refused:
            if refused.status in (404, 405):
                raise _not_a_model_server(server, refused) from None
            match = _EXPECTED_SHAPE.search(refused.message)
            if match:
                raise ServerError(
                    f"the model at {server} takes {match[1]} x {match[2]} px images, not {size} "
                    f"px; pass --image-size {match[1]}, or leave it out to ask the server"
                ) from None
            raise ServerError(f"the model server at {server} refused the images ({refused}); "
                              "its log says more") from None
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        try:
            probabilities = np.asarray(predictions, dtype=np.float64).reshape(len(images), -1)
        except (TypeError, ValueError):
            probabilities = None
        if probabilities is None or probabilities.shape[1] != 1:
            raise ServerError(f"{server} answered {str(answer)[:120]}, not one probability per "
                              f"image; serve a catsdogs model with `{SERVE_COMMAND}`")
        probabilities = probabilities[:, 0]
        if not np.all((probabilities >= 0) & (probabilities <= 1)):
            raise ServerError(
                f"the model at {server} answers values outside [0, 1] (a logit, not a "
                f"probability): serve the model the train stage logs to MLflow, which ends in "
                f"a sigmoid, e.g. `{SERVE_COMMAND}`")
        return probabilities

    return score
