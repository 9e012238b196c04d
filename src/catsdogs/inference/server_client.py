"""A model served over HTTP by `mlflow models serve`: photos in, label and P(dog) out.

Talks to the server's scoring endpoint, `<server>/invocations`: posts the photo files' bytes,
base64 in one column (`{"dataframe_split": {"columns": ["image"], "data": [[b64], ...]}}`,
as MLflow's scoring server carries binary columns), and reads `{"predictions": [{"label",
"probability_dog"}, ...]}`, one per photo (the registered model is `photo_pyfunc`'s pyfunc:
the server decodes each photo as training does, at the model's own size). A photo the
server refuses comes back as PhotoRefused, with the server's reason. Whatever else goes wrong
(no server there, not a model server, a model that takes arrays, an answer that is not one
verdict per photo) is a ServerError saying what to do. Sending photos never starts
TensorFlow: only the request's shape and the refusals' wording come from `photo_pyfunc`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import urllib.error
import urllib.request

from catsdogs.core.errors import UserError
from catsdogs.inference.photo_pyfunc import IMAGE_COLUMN, refused_photo
from catsdogs.inference.predict import PhotoSender

# How the README starts a server for the champion; error messages offer it.
SERVE_COMMAND = "mlflow models serve -m models:/catsdogs@champion --env-manager local -p 5001"
# A batch of 64 photos at 224 px on 2 CPU cores answers in well under a minute; a server that
# has not answered in this long is stuck, not busy.
REQUEST_TIMEOUT_S = 300
# How MLflow 3.17 refuses a column of photos sent to a model of arrays (the Keras flavour's,
# or a version registered before models took photos): it cannot make pixels of base64 text.
_TAKES_ARRAYS = re.compile(r"Failed to convert column \S+ to type '(float|u?int)\d*'|Tensor\(")


class ServerError(UserError):
    """A model server that cannot be reached or does not answer as a served catsdogs model."""


class _Refused(Exception):
    """The server answered with an HTTP error: its status and its message."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.whole = status, _whole_message(body)
        self.message = _last_error(self.whole)
        super().__init__(f"HTTP {status}: {self.message[-500:]}")


def base_url(server: str) -> str:
    """The server's address as `http://host:port`, from what a user types: a bare
    host:port, a trailing slash, or the /invocations address itself."""
    url = server.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix("/invocations")


def request_body(photos: list[bytes]) -> bytes:
    """The JSON MLflow's scoring server takes for a column of photos: each file's bytes in
    base64, as `base64 -w0 photo.jpg` writes them."""
    rows = [[base64.b64encode(photo).decode("ascii")] for photo in photos]
    return json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": rows}},
                      separators=(",", ":")).encode()


def _whole_message(body: bytes) -> str:
    """An error body's text: MLflow's `message` where it is JSON with one."""
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError, AttributeError):  # not JSON, or not an object
        text = str(json.loads(text).get("message", text))
    return text.strip()


def _last_error(message: str) -> str:
    """The useful part of MLflow's message, which repeats the input first: from its last
    `Error: `."""
    return message.rpartition("Error: ")[2].strip() or "(no message)"


def _post(server: str, body: bytes) -> object:
    """POST `body` to <server>/invocations; the decoded JSON answer. _Refused for an HTTP
    error, ServerError when nothing answers."""
    url = f"{server}/invocations"
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            answer = response.read()
    except urllib.error.HTTPError as error:
        raise _Refused(error.code, error.read()) from None
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


def verdicts(answer: object, count: int, source: str) -> list[tuple[str, float]]:
    """(label, P(dog)) per photo from a model's answer, `{"predictions": [{"label",
    "probability_dog"}, ...]}` or the records alone. ServerError when it is not `count`
    verdicts with probabilities in [0, 1]."""
    predictions = answer.get("predictions") if isinstance(answer, dict) else answer
    try:
        found = [(str(p["label"]), float(p["probability_dog"])) for p in predictions]
    except (TypeError, KeyError, ValueError):
        found = None
    if found is None or len(found) != count:
        raise ServerError(f"{source} answered {str(answer)[:120]}, not a label and a "
                          f"probability for each of {count} photo(s); serve the registered "
                          f"catsdogs model, e.g. `{SERVE_COMMAND}`")
    if not all(0.0 <= p <= 1.0 for _, p in found):
        raise ServerError(f"{source} answered probabilities outside [0, 1]; serve the "
                          f"registered catsdogs model, e.g. `{SERVE_COMMAND}`")
    return found


def server_sender(server: str) -> PhotoSender:
    """(label, P(dog)) per photo, from the model served at `server`; at most
    MAX_PHOTOS_PER_REQUEST photos a call. PhotoRefused names a photo the server refused;
    ServerError says what to do when the server refuses otherwise or answers oddly."""
    def send(photos: list[bytes]) -> list[tuple[str, float]]:
        try:
            answer = _post(server, request_body(photos))
        except _Refused as refused:
            if refused.status in (404, 405):
                raise ServerError(
                    f"{server}/invocations answered {refused}; that is not a model server "
                    f"(mlflow ui's address is not one): start one with `{SERVE_COMMAND}` and "
                    "pass its address") from None
            if (photo := refused_photo(refused.message)) is not None:  # the whole reason
                raise photo from None
            if _TAKES_ARRAYS.search(refused.whole):
                raise ServerError(
                    f"the model at {server} takes arrays of pixels, not photos: it was "
                    "registered before models took photos, or is the Keras model itself. "
                    "Register the champion again (`python stages/compare.py`) and serve it: "
                    f"`{SERVE_COMMAND}`") from None
            raise ServerError(f"the model server at {server} refused the photos ({refused}); "
                              "its log says more") from None
        return verdicts(answer, len(photos), server)

    return send

