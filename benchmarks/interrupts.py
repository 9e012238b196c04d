"""Stress check: Ctrl-C at random moments of a training, on a busy machine, ends its run right.

Builds a throw-away project (the pipeline as in the working tree, the synthetic data set of
the tests), runs `dvc repro train@<M1>` once to time a whole training, then again and again
with both cores kept busy by CPU-burning processes, sending SIGINT to the process group (as
a terminal's Ctrl-C does) after a random delay across the training's life: starting up,
mid-epoch, between epochs, while logging, while saving. After each it reads the store
directly (no catsdogs process connects, so no clean-up hides a run left RUNNING) and checks:

- the run of that attempt is KILLED (or FAILED with a cause, or FINISHED when the signal
  came after it had ended), never RUNNING; no run at all when the signal came before it started;
- no model folder or temporary folder is half-written.

Prints one line per attempt (delay, the last output line before the signal, exit code, run
status) and a summary; a failed attempt's whole output is kept under --logs and printed.

    python benchmarks/interrupts.py --attempts 20 --burners 2

Exits 1 when any attempt left a run RUNNING or a half-written output.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_project, project_params, small_params, tool_env, write_dataset_zip, write_params

M1 = next(iter(project_params()["models"]))


def burners(count: int) -> list[subprocess.Popen]:
    """`count` processes that keep a core each at 100%."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def runs_of(repo: Path) -> dict[str, str]:
    """{run id: status} of every run in the project's store, read without catsdogs."""
    from mlflow.tracking import MlflowClient

    store = repo / "mlflow.db"
    if not store.exists():
        return {}
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("catsdogs")
    if experiment is None:
        return {}
    return {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}


def attempt(repo: Path, delay_s: float | None, log_path: Path) -> dict:
    """One `dvc repro` of M1, interrupted after `delay_s` (None: not interrupted)."""
    before = runs_of(repo)
    lines: list[str] = []
    started = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", f"train@{M1}"],
                            cwd=repo, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    last_line = ""
    if delay_s is not None:
        try:
            proc.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            last_line = lines[-1].strip() if lines else "(no output yet)"
            os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines.append("[interrupts.py: still running 300 s after the signal; killed]\n")
    reader.join(timeout=10)
    elapsed = time.perf_counter() - started
    log_path.write_text("".join(lines))
    new = {k: v for k, v in runs_of(repo).items() if k not in before}
    leftovers = [p.name for p in (repo / "models").glob(".*")] if (repo / "models").exists() else []
    return {"delay_s": delay_s, "elapsed_s": elapsed, "returncode": proc.returncode,
            "last_line": last_line[:70], "statuses": sorted(new.values()),
            "leftovers": leftovers, "log": log_path}


def verdict(result: dict) -> str:
    """'ok' or what went wrong."""
    if result["leftovers"]:
        return f"half-written outputs {result['leftovers']}"
    statuses = result["statuses"]
    if "RUNNING" in statuses:
        return "run left RUNNING"
    if len(statuses) > 1:
        return f"{len(statuses)} runs for one attempt"
    if result["returncode"] == 0 and statuses != ["FINISHED"]:
        return f"exit 0 but run {statuses}"
    return "ok"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2,
                        help="CPU-burning processes beside each attempt (default: one per core).")
    parser.add_argument("--epochs", type=int, default=20, help="Epochs of the interrupted training.")
    parser.add_argument("--window", type=float, default=None,
                        help="Latest signal, in seconds after the start (default: the length of "
                             "an uninterrupted training, timed first).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random delays.")
    parser.add_argument("--logs", type=Path, default=None,
                        help="Folder for each attempt's output (default: a temporary folder).")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="catsdogs-interrupts-") as tmp:
        tmp_path = Path(tmp)
        logs = args.logs or tmp_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        dataset_zip = write_dataset_zip(tmp_path / "cats_and_dogs_filtered.zip")
        params = small_params(dataset_zip)
        params["models"][M1]["epochs"] = args.epochs
        repo = make_project(tmp_path / "project", params)
        write_params(repo / "params.yaml", params)
        subprocess.run(["dvc", "repro", "pretrained", "split"], cwd=repo, env=tool_env(), check=True,
                       capture_output=True)

        hogs = burners(args.burners)
        try:
            if args.window:
                life_s = args.window
            else:
                timing = attempt(repo, None, logs / "uninterrupted.log")
                if timing["returncode"] != 0:
                    print(timing["log"].read_text()[-3000:])
                    return 1
                life_s = timing["elapsed_s"]
                print(f"uninterrupted training under load ({args.burners} burners): {life_s:.1f} s")
            print(f"signals at random in 0-{life_s:.0f} s after the start\n")
            print(f"{'#':>3} {'delay s':>8} {'exit':>5} {'run':<10} {'verdict':<22} last line before SIGINT")
            failures = []
            for number in range(1, args.attempts + 1):
                delay = rng.uniform(0.2, life_s)
                result = attempt(repo, delay, logs / f"attempt{number:02d}.log")
                outcome = verdict(result)
                print(f"{number:>3} {delay:>8.1f} {result['returncode']:>5} "
                      f"{','.join(result['statuses']) or '-':<10} {outcome:<22} {result['last_line']}",
                      flush=True)
                if outcome != "ok":
                    failures.append(result)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        for result in failures:
            print(f"\n--- output of the attempt after {result['delay_s']:.1f} s ---")
            print(result["log"].read_text()[-6000:])
        print(f"\n{args.attempts - len(failures)} of {args.attempts} interrupted trainings ended "
              f"right under load.")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
