"""Look at `catsdogs ui` the way a user does: headless Chromium screenshots of its pages.

Starts `catsdogs ui --no-browser --port P` in a project folder (one with an mlflow.db, or
with MLFLOW_TRACKING_URI set), waits for the address it prints and for the server to answer
(both with a deadline; the command's output is kept and printed if it fails), then, in a
fresh browser profile (no column choice or GenAI switch remembered from an earlier visit):

- screenshots the printed address (the experiment's runs, model-training view) and the
  experiment's Models tab (`#/experiments/<id>/models?workflowType=machine_learning`, a
  route of MLflow 3.17's UI);
- dumps each page's DOM and checks it for what a user needs: on the runs page every run name
  and the test-accuracy metric; on the Models tab every LoggedModel name. What to expect is
  read from the server's REST API, not guessed.

Writes runs.png, runs.html, models.png, models.html under --out and prints what it found;
stops the server (its whole process group) whatever happens. Needs `chromium` (Debian:
`apt-get install chromium`) or --chromium PATH.

    python benchmarks/ui_screenshot.py /path/to/project --out /tmp/ui-shots

Exits 1 when a page misses something it should show, 2 when the server or Chromium fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PREFIX = "catsdogs runs: "
TEST_METRIC = "test_accuracy"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class Failed(Exception):
    """The server or the browser did not do its part; the message says what it printed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether an HTTP GET of `url` succeeds within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (OSError, urllib.error.URLError):
        return False


def start_ui(project: Path, port: int) -> tuple[subprocess.Popen, list[str], queue.Queue]:
    """`catsdogs ui` in `project`, in its own process group; its output lines are appended to
    the returned list and put on the queue as they come (None at the end)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    process = subprocess.Popen(
        [sys.executable, "-m", "catsdogs.cli.main", "ui", "--no-browser", "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[str] = []
    pending: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            pending.put(line)
        pending.put(None)

    threading.Thread(target=read, daemon=True).start()
    return process, lines, pending


def wait_for_address(process: subprocess.Popen, lines: list[str], pending: queue.Queue,
                     port: int, timeout_s: float) -> str:
    """The address `catsdogs ui` prints, once the server on `port` answers too."""
    deadline = time.monotonic() + timeout_s
    address = ""
    while time.monotonic() < deadline:
        try:
            line = pending.get(timeout=0.5)
        except queue.Empty:
            line = ""
        if line is None:  # output closed: the command ended
            process.wait(timeout=10)
            raise Failed(f"catsdogs ui exited with status {process.returncode}:\n"
                         + "".join(lines)[-4000:])
        if line.startswith(PREFIX):
            address = line.removeprefix(PREFIX).split()[0]
        if address and answers(f"http://127.0.0.1:{port}/health"):
            return address
    raise Failed(f"no address from catsdogs ui within {timeout_s:.0f} s (address so far: "
                 f"{address or 'none'}); its output:\n" + "".join(lines)[-4000:])


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (a zombie counts until reaped)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """End the process group of `process` (catsdogs ui, mlflow ui, its workers and job
    runners): SIGTERM, then SIGKILL to what is left after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def api(server: str, path: str, body: dict) -> dict:
    """POST `body` to the MLflow REST endpoint `path`; the decoded answer."""
    request = urllib.request.Request(f"{server}/api/2.0/mlflow/{path}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def expected(server: str, experiment_id: str) -> tuple[list[str], list[str], list[str]]:
    """(run names, their test-accuracy metric keys, LoggedModel names) of the experiment."""
    runs = api(server, "runs/search", {"experiment_ids": [experiment_id],
                                       "max_results": 1000}).get("runs", [])
    names = sorted(r["info"].get("run_name", "") for r in runs)
    metrics = sorted({m["key"] for r in runs for m in r["data"].get("metrics", [])
                      if m["key"].startswith(TEST_METRIC)})
    models = api(server, "logged-models/search", {"experiment_ids": [experiment_id],
                                                  "max_results": 100}).get("models", [])
    return names, metrics, sorted(m["info"]["name"] for m in models)


def chromium(browser: str, url: str, out: Path, window: str, budget_ms: int,
             timeout_s: float) -> str:
    """Screenshot `url` to out.png and its DOM to out.html, in a fresh profile; the DOM.

    The tables draw only the columns within the window: one off to the right is not in the DOM.
    """
    common = ["--headless", "--disable-gpu", "--no-sandbox", f"--window-size={window}",
              "--hide-scrollbars", "--run-all-compositor-stages-before-draw",
              f"--virtual-time-budget={budget_ms}"]
    dom = ""
    for extra in ([f"--screenshot={out.with_suffix('.png')}"], ["--dump-dom"]):
        with tempfile.TemporaryDirectory(prefix="ui-shot-profile-") as profile:
            try:
                done = subprocess.run([browser, *common, f"--user-data-dir={profile}", *extra,
                                       url], capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired as error:
                raise Failed(f"chromium did not finish {url} within {timeout_s:.0f} s") from error
        if done.returncode != 0:
            raise Failed(f"chromium exited with {done.returncode} on {url}:\n"
                         f"{done.stderr[-4000:]}")
        if "--dump-dom" in extra:
            dom = done.stdout
            out.with_suffix(".html").write_text(dom, encoding="utf-8")
    return dom


def check(label: str, dom: str, wanted: list[str]) -> list[str]:
    """Print which of `wanted` the page's DOM shows; return the missing ones."""
    missing = [w for w in wanted if w not in dom]
    print(f"  {label}: {len(wanted) - len(missing)} of {len(wanted)} shown"
          + (f"; missing: {', '.join(missing)}" if missing else ""))
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, nargs="?", default=Path("."),
                        help="Folder to run `catsdogs ui` in (holds mlflow.db).")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ui-shots"),
                        help="Folder for the screenshots and DOM dumps.")
    parser.add_argument("--port", type=int, default=0, help="Port for mlflow ui (0: a free one).")
    parser.add_argument("--chromium", default=None, help="Browser binary (default: on PATH).")
    parser.add_argument("--window", default="1600,1000",
                        help="Browser window WIDTH,HEIGHT (columns beyond the width are not drawn).")
    parser.add_argument("--budget-ms", type=int, default=20000,
                        help="Chromium's virtual time budget per page (lets React render).")
    parser.add_argument("--start-timeout", type=float, default=180,
                        help="Seconds to wait for the address and the server.")
    args = parser.parse_args()

    browser = args.chromium or next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        print(f"no browser found (tried {', '.join(BROWSERS)}); pass --chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    process, lines, pending = start_ui(args.project.resolve(), port)
    try:
        address = wait_for_address(process, lines, pending, port, args.start_timeout)
        server = address.split("/#/")[0]
        experiment_id = address.split("/experiments/")[1].split("/")[0]
        runs, metrics, models = expected(server, experiment_id)
        # The Models tab, in the model-training view too (without the parameter, a fresh
        # browser shows it as GenAI's "Agent versions").
        models_url = f"{server}/#/experiments/{experiment_id}/models?workflowType=machine_learning"
        print(f"runs page:  {address}\nmodels tab: {models_url}")
        print(f"store: {len(runs)} runs, test metrics {metrics or 'none'}, "
              f"{len(models)} LoggedModels")
        runs_dom = chromium(browser, address, args.out / "runs", args.window, args.budget_ms,
                            180)
        models_dom = chromium(browser, models_url, args.out / "models", args.window,
                              args.budget_ms, 180)
    except Failed as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        stop(process)
    print(f"{args.out / 'runs.png'}:")
    missing = check("run names", runs_dom, runs) + check("test-accuracy columns", runs_dom,
                                                         metrics or [TEST_METRIC])
    print(f"{args.out / 'models.png'}:")
    missing += check("LoggedModels", models_dom, models)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
