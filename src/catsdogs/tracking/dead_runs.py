"""Runs whose process died: who owns a run, and ending those whose owner is gone.

A process that dies without a chance to end its run (SIGKILL, the OOM killer, a closed
laptop) leaves it RUNNING. So each run records its owner (host, pid, the process's start
time), and `store.connect` ends, as KILLED with a tag saying how it was found, every RUNNING
run of this host whose owner is gone: `mlflow ui` never shows a dead training as running for
longer than until the next stage starts.

Reads this kernel's boot id and this process's pid namespace (/proc), the process table and
the RUNNING runs of the experiment; writes, on each run it ends, the ENDED_BY tag and the
KILLED status.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

from catsdogs.tracking.writes import holding_interrupts, write

log = logging.getLogger(__name__)

# Who owns a run: set when it starts, read when a later process looks for dead owners.
OWNER_HOST, OWNER_PID, OWNER_STARTED = "catsdogs.owner.host", "catsdogs.owner.pid", "catsdogs.owner.started"
# Where the owner's pid means something: its kernel's boot and its pid namespace. Containers
# share their host's name (often) and its boot, never their pid namespace.
OWNER_BOOT, OWNER_PID_NAMESPACE = "catsdogs.owner.boot_id", "catsdogs.owner.pid_namespace"
# Set on a run ended KILLED because its owner was gone: by whom, when, and why.
ENDED_BY = "catsdogs.ended_by"


def _pid_space() -> dict[str, str]:
    """This process's kernel boot and pid namespace, where the OS says ("" elsewhere)."""
    def read(path: str, link: bool = False) -> str:
        try:
            return os.readlink(path) if link else Path(path).read_text().strip()
        except OSError:
            return ""
    return {OWNER_BOOT: read("/proc/sys/kernel/random/boot_id"),
            OWNER_PID_NAMESPACE: read("/proc/self/ns/pid", link=True)}


def owner_tags() -> dict[str, str]:
    """This process as a run's owner: host, kernel boot, pid namespace, pid and start time
    (a reused pid has another)."""
    me = psutil.Process()
    return {OWNER_HOST: socket.gethostname(), **_pid_space(), OWNER_PID: str(me.pid),
            OWNER_STARTED: f"{me.create_time():.2f}"}


def _owner_alive(tags: Mapping[str, str]) -> bool:
    """Whether the process a run's owner tags name still runs (the same process, not a new
    one that got its pid). Only asked of an owner in this process's pid space."""
    try:
        process = psutil.Process(int(tags[OWNER_PID]))
        return abs(process.create_time() - float(tags[OWNER_STARTED])) < 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess, KeyError, ValueError):
        return False
    except psutil.AccessDenied:  # it exists; another user's
        return True


def _owner_here(tags: Mapping[str, str], space: Mapping[str, str]) -> bool:
    """Whether a run's owner ran where this process's pids mean the same: the same pid
    namespace in the same kernel boot. A run from before these tags (host name only) is
    judged as before, by its pid."""
    if OWNER_PID_NAMESPACE not in tags:
        return True
    return all(tags.get(key) == value and value for key, value in space.items())


def _owner_rebooted(tags: Mapping[str, str], space: Mapping[str, str]) -> bool:
    """Whether a run's owner ran in this pid namespace in an earlier boot of this kernel's
    machine: it started before this boot, so it is gone with it (what a reboot mid-training
    leaves behind)."""
    same_namespace = tags.get(OWNER_PID_NAMESPACE) == space[OWNER_PID_NAMESPACE] != ""
    other_boot = tags.get(OWNER_BOOT) not in (None, "", space[OWNER_BOOT])
    try:
        return same_namespace and other_boot and float(tags[OWNER_STARTED]) < psutil.boot_time()
    except (KeyError, ValueError):
        return False


def end_orphaned_runs(experiment_id: str) -> list[str]:
    """End KILLED every RUNNING run of this host whose owning process is gone: one of this
    kernel boot and pid namespace whose pid no longer runs, or one of this pid namespace
    that started before this boot. Return their ids. Runs owned elsewhere (another host,
    another container on this one), and runs without owner tags, are left as they are."""
    host = socket.gethostname()
    client = MlflowClient()
    found = write(lambda: client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'",
        max_results=1000))
    ended = []
    space = _pid_space()
    for stale in found:
        tags = stale.data.tags
        if not _owner_rebooted(tags, space) and (
                not _owner_here(tags, space) or _owner_alive(tags)):
            continue  # alive, or another container's (or machine's) pids: not ours to judge
        note = (f"owner process {stale.data.tags.get(OWNER_PID)} on {host} was gone when process "
                f"{os.getpid()} connected at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        run_id = stale.info.run_id
        with holding_interrupts():
            write(lambda run_id=run_id, note=note: client.set_tag(run_id, ENDED_BY, note))
            write(lambda run_id=run_id: client.set_terminated(run_id, "KILLED"))
        log.warning("ended run %s (%s) KILLED: its %s", stale.info.run_id,
                    stale.data.tags.get("mlflow.runName"), note)
        ended.append(stale.info.run_id)
    return ended
