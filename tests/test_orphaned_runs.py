"""A training killed without warning (SIGKILL, the OOM killer) does not stay RUNNING."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from catsdogs.tracking import dead_runs, runs, store

# Opens a run, says its id, then waits to be killed.
OWNER = """
import sys, time
from catsdogs.tracking import runs, store
store.connect()
with runs.run("victim") as run_id:
    print(run_id, flush=True)
    time.sleep(120)
"""


def start_owner(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    line = owner.stdout.readline().strip()  # printed only once the run has started
    if not line:
        owner.kill()
        raise AssertionError(f"the owner process died first: {owner.communicate()[1][-2000:]}")
    return owner, line


@pytest.fixture()
def store_env(tracking_store: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_store}


def test_a_run_whose_process_was_killed_ends_killed_at_the_next_connect(store_env) -> None:
    owner, run_id = start_owner(store_env)
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=60)
    store.connect()
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"owner process {owner.pid} on" in run.data.tags[dead_runs.ENDED_BY]
    assert run.data.tags[dead_runs.OWNER_PID] == str(owner.pid)


def test_a_run_whose_process_lives_stays_running(store_env) -> None:
    owner, run_id = start_owner(store_env)
    try:
        assert store.connect() and MlflowClient().get_run(run_id).info.status == "RUNNING"
    finally:
        owner.kill()
        owner.wait(timeout=60)


def test_a_reused_pid_is_not_taken_for_the_owner(tracking_store: str) -> None:
    store.connect()
    with runs.run("mine") as run_id:
        # The same pid, but a process that started at another time: not this run's owner.
        MlflowClient().set_tag(run_id, dead_runs.OWNER_STARTED, "12345.00")
        experiment = MlflowClient().get_experiment_by_name(store.EXPERIMENT)
        assert dead_runs.end_orphaned_runs(experiment.experiment_id) == [run_id]


def test_runs_of_other_hosts_are_left_alone(tracking_store: str) -> None:
    store.connect()
    client = MlflowClient()
    experiment = client.get_experiment_by_name(store.EXPERIMENT).experiment_id
    run = client.create_run(experiment, tags={dead_runs.OWNER_HOST: "elsewhere",
                                              dead_runs.OWNER_PID: "1", dead_runs.OWNER_STARTED: "0"})
    assert dead_runs.end_orphaned_runs(experiment) == []
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def alive_in_group(pgid: int) -> list[str]:
    """The processes of group `pgid` still running (zombies are their reaper's), as 'pid cmd'."""
    import psutil

    alive = []
    for proc in psutil.process_iter(["status", "cmdline"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
    return alive


@pytest.mark.slow
def test_catsdogs_ui_serves_the_project_store_at_the_runs_page(tmp_path: Path, store_env) -> None:
    """`catsdogs ui` starts mlflow ui on the project's store and prints the address of the
    experiment's runs in the model-training view; that server answers for the experiment.
    `kill` (SIGTERM to the command alone) ends the server and every process it started."""
    import json
    import threading
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    env = {**store_env, "BROWSER": "true"}  # a "browser" that does nothing
    # In a process group of its own, all of which the test ends whatever happens.
    ui = subprocess.Popen([sys.executable, "-m", "catsdogs.cli.main", "ui", "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=tmp_path, start_new_session=True)
    lines: list[str] = []  # read to the end, so no write of the server's blocks on a full pipe
    reader = threading.Thread(target=lambda: lines.extend(ui.stdout), daemon=True)
    reader.start()

    def output() -> str:
        return "".join(lines)[-4000:]

    try:
        deadline = time.monotonic() + 180
        while not (said := [x for x in lines if x.startswith("catsdogs runs: ")]):
            if ui.poll() is not None or time.monotonic() > deadline:
                reader.join(timeout=10)
                raise AssertionError(f"no address (exit status {ui.poll()}):\n{output()}")
            time.sleep(0.2)
        address = said[0].removeprefix("catsdogs runs: ").split()[0]
        assert address.startswith(f"http://127.0.0.1:{port}/#/experiments/"), output()
        assert address.endswith("/runs?workflowType=machine_learning&viewStateShareKey=catsdogs")
        experiment_id = address.split("/experiments/")[1].split("/")[0]
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=catsdogs"
        with urllib.request.urlopen(api, timeout=10) as answer:
            experiment = json.load(answer)["experiment"]
        assert experiment["experiment_id"] == experiment_id
        # The view the address names, as the page reads it: the accuracies as columns.
        view = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.sharedViewState.catsdogs"]
        assert "metrics.`test_accuracy`" in json.loads(view)["selectedColumns"]

        ui.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 120
        while (alive := alive_in_group(ui.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive, f"still running after SIGTERM: {alive}\n{output()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)
        ui.wait(timeout=30)


def orphan(experiment: str, **tags: str) -> str:
    """A RUNNING run of this host whose owner pid is dead here (pid 1 never starts at 0)."""
    mine = dead_runs.owner_tags()
    owner = {**mine, dead_runs.OWNER_PID: "1", dead_runs.OWNER_STARTED: "0", **tags}
    return MlflowClient().create_run(experiment, tags=owner).info.run_id


def test_a_dead_pid_in_another_container_of_this_host_is_not_ours_to_end(tracking_store) -> None:
    # Same host name and kernel boot, another pid namespace: that pid means another process.
    store.connect()
    experiment = store.experiment_id()
    theirs = orphan(experiment, **{dead_runs.OWNER_PID_NAMESPACE: "pid:[4026532999]"})
    ours = orphan(experiment)
    assert dead_runs.end_orphaned_runs(experiment) == [ours]
    assert MlflowClient().get_run(theirs).info.status == "RUNNING"


def test_a_run_from_before_a_reboot_is_ended(tracking_store) -> None:
    store.connect()
    experiment = store.experiment_id()
    # The pid space of this host before a reboot: its process may even be "alive" now.
    alive_pid = str(os.getpid())
    rebooted = orphan(experiment, **{dead_runs.OWNER_BOOT: "an-earlier-boot",
                                     dead_runs.OWNER_PID: alive_pid})
    # The same, but started after this boot: another machine of the same name, left alone.
    other_machine = orphan(experiment, **{dead_runs.OWNER_BOOT: "another-kernel",
                                          dead_runs.OWNER_STARTED: "9999999999"})
    assert dead_runs.end_orphaned_runs(experiment) == [rebooted]
    assert MlflowClient().get_run(other_machine).info.status == "RUNNING"
