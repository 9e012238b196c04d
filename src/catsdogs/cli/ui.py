"""`catsdogs ui`: open the project's MLflow runs in `mlflow ui`, started on the project's
store and stopped (with all it started) when this command ends; with a tracking server in
MLFLOW_TRACKING_URI, only its address is printed and opened.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import click

from catsdogs.cli.stage_support import setup_logging

if TYPE_CHECKING:
    import subprocess


def _stop_server(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """End `process` (mlflow ui) and all it started: SIGTERM, and where it is still there
    after `timeout_s` (a busy machine, a hung worker), SIGKILL to it and its descendants."""
    import subprocess

    import psutil

    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        process.kill()
        process.wait()


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address mlflow ui binds to.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True,
              help="Port of mlflow ui.")
@click.option("--no-browser", is_flag=True, help="Print the address; open no browser.")
@click.argument("mlflow_options", nargs=-1, type=click.UNPROCESSED)
def ui(host: str, port: int, no_browser: bool, mlflow_options: tuple[str, ...]) -> None:
    """Open the project's MLflow runs: `mlflow ui` on the project's store (MLFLOW_TRACKING_URI,
    else mlflow.db at the project root), showing the catsdogs experiment's runs in the
    model-training view with each run's validation and test accuracy as columns. Options after
    the known ones go to `mlflow ui` as they are. With a tracking server in
    MLFLOW_TRACKING_URI, only its address is printed and opened."""
    import signal
    import subprocess
    import time
    import urllib.request
    import webbrowser

    from catsdogs.tracking import store

    setup_logging()
    try:
        uri = store.connect()  # ends runs left RUNNING by dead processes, too
    except store.TrackingError as error:
        raise click.ClickException(str(error)) from error
    remote = uri.startswith(("http://", "https://"))
    server = uri if remote else f"http://{host}:{port}"
    experiment_id = store.experiment_id()
    store.publish_runs_view(experiment_id)
    address = store.experiment_address(server, experiment_id)
    if remote:
        click.echo(address)
        if not no_browser:
            webbrowser.open(address)
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
               "--port", str(port), *mlflow_options]
    # `kill` (SIGTERM) stops this command as Ctrl-C does, through `finally` below: else
    # mlflow ui and its workers would outlive it, still serving.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None:
            try:
                with urllib.request.urlopen(f"{server}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        if process.poll() is not None:
            raise click.ClickException(f"mlflow ui exited with status {process.returncode}; "
                                       "its output above says why (a port in use: --port)")
        click.echo(f"catsdogs runs: {address}  (Ctrl-C to stop)")
        if not no_browser:
            # No browser here (a server, CI): the address is printed above.
            with contextlib.suppress(webbrowser.Error):
                webbrowser.get().open(address)
        process.wait()
    finally:
        _stop_server(process)
        signal.signal(signal.SIGTERM, previous)
