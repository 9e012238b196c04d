"""Load test: the registered champion served by `mlflow models serve`, with photos, on 127.0.0.1.

Starts a real server of --model (`mlflow models serve --env-manager local --workers 1`) on a
free port of 127.0.0.1, then for each number of photos per request (1 and 16) and each
number of concurrent clients (1, 4 and 16) sends a fixed count of requests, every tenth one a
bad request (not base64, not an image, truncated, a decompression bomb, an empty batch, a
batch over the cap, a wrong column, in turn). It checks every answer: a good request must
come back 200 with each photo's label equal to, and P(dog) within 1e-6 of, `catsdogs
predict`'s with the same registered model loaded in this process; a bad one must come back
4xx. Meanwhile it samples the server's resident memory (its whole process tree).

Prints, per level, photos per second, p50 / p99 latency of good requests, wrong answers,
failed good requests, bad requests answered 4xx, and the server's memory peak and after the
level; writes the same to --out as JSON. The run is bounded: a fixed count of requests per
level, a time limit for all of it (--time-limit; levels not reached are reported as
skipped), and the server is stopped at the end whatever happened.

    python benchmarks/serve.py --photos-from data/split/manifest.csv --out benchmarks/serve.json

Exits 1 when any answer was wrong, any good request failed, or any bad request was not a 4xx.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def photos_json(photos: list[bytes], column: str = "image") -> bytes:
    rows = [[base64.b64encode(p).decode("ascii")] for p in photos]
    return json.dumps({"dataframe_split": {"columns": [column], "data": rows}}).encode()


def bad_requests(photo: bytes, cap: int, folder: Path) -> list[tuple[str, bytes]]:
    from test_images import bomb_png

    bomb = bomb_png(folder / "bomb.png").read_bytes()
    return [
        ("not base64", b'{"dataframe_split": {"columns": ["image"], "data": [["not base64!!"]]}}'),
        ("not an image", photos_json([b"plain text, not a photo"])),
        ("truncated", photos_json([photo[: len(photo) // 2]])),
        ("decompression bomb", photos_json([bomb])),
        ("empty batch", b'{"dataframe_split": {"columns": ["image"], "data": []}}'),
        ("over the cap", photos_json([photo] * (cap + 1))),
        ("wrong column", photos_json([photo], column="photo")),
    ]


def post(url: str, body: bytes, timeout_s: float = 300) -> tuple[int, object, float]:
    """(HTTP status, JSON answer, seconds) of one request; status 0 when none came."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error), time.perf_counter() - start
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text[:200]
    return status, answer, time.perf_counter() - start


class MemoryWatch:
    """The peak resident memory of a process and its children, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def now(self) -> int:
        total = 0
        for p in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                self.peak = max(self.peak, self.now())

    def reset(self) -> None:
        with self._lock:
            self.peak = self.now()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, log: Path, timeout_s: float = 300) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    stop_server(server)
    raise SystemExit(f"the server did not answer /ping within {timeout_s:.0f} s; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def right_answers(answer: object, payload: list[tuple[str, bytes]],
                  reference: dict[str, tuple[str, float]]) -> int:
    """How many of a request's photos got the label and, within 1e-6, the P(dog) that the
    model loaded here gives; an answer that is not one verdict per photo has none right."""
    try:
        verdicts = answer["predictions"]
        if len(verdicts) != len(payload):
            return 0
        return sum(v["label"] == reference[name][0]
                   and abs(v["probability_dog"] - reference[name][1]) <= 1e-6
                   for (name, _), v in zip(payload, verdicts, strict=True))
    except (TypeError, KeyError):
        return 0


def run_level(url: str, photos: list[tuple[str, bytes]], reference: dict[str, tuple[str, float]],
              bad: list[tuple[str, bytes]], *, per_request: int, clients: int, requests: int,
              deadline: float, memory: MemoryWatch) -> dict:
    """One level: `requests` requests from `clients` threads, every tenth a bad one."""
    jobs = []
    cursor = 0
    for index in range(requests):
        if index % 10 == 9:
            jobs.append(("bad", bad[(index // 10) % len(bad)]))
            continue
        chosen = [photos[(cursor + k) % len(photos)] for k in range(per_request)]
        cursor += per_request
        jobs.append(("good", chosen))
    results: list[dict] = []
    lock = threading.Lock()

    def send(job: tuple[str, object]) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        kind, payload = job
        if kind == "bad":
            name, body = payload
            status, answer, seconds = post(url, body, left)
            record = {"kind": "bad", "name": name, "ok": 400 <= status < 500, "status": status}
        else:
            status, answer, seconds = post(url, photos_json([data for _, data in payload]), left)
            wrong = 0
            if status == 200:
                wrong = len(payload) - right_answers(answer, payload, reference)
            record = {"kind": "good", "ok": status == 200, "status": status, "wrong": wrong,
                      "photos": len(payload), "seconds": seconds}
        with lock:
            results.append(record)

    memory.reset()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, jobs))
    wall = time.perf_counter() - start
    good = [r for r in results if r["kind"] == "good"]
    latencies = sorted(r["seconds"] for r in good if r["ok"])
    p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)] if latencies else None
    bad_done = [r for r in results if r["kind"] == "bad"]
    return {
        "photos_per_request": per_request, "clients": clients, "requests": requests,
        "sent": len(results), "complete": len(results) == requests,
        "photos_per_s": round(sum(r["photos"] for r in good if r["ok"]) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies)) if latencies else None,
        "p99_ms": round(1000 * p99) if latencies else None, "timed": len(latencies),
        "wrong_answers": sum(r.get("wrong", 0) for r in good),
        "failed_good_requests": sum(not r["ok"] for r in good),
        "bad_requests": len(bad_done), "bad_answered_4xx": sum(r["ok"] for r in bad_done),
        "server_peak_mb": round(memory.peak / 2**20), "server_after_mb": round(memory.now() / 2**20),
        "seconds": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/catsdogs@champion")
    parser.add_argument("--photos-from", type=Path, default=ROOT / "data/split/manifest.csv",
                        help="the split's manifest: its test photos are sent")
    parser.add_argument("--images", type=Path, default=ROOT / "data/raw")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--photos-per-request", default="1,16")
    parser.add_argument("--requests", type=int, default=200,
                        help="requests per level of one photo; a level of 16 sends a quarter")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times every level is run: memory after the last round against "
                             "the first shows whether it stays flat")
    parser.add_argument("--time-limit", type=float, default=1200.0, help="seconds, all levels")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import mlflow.pyfunc

    from catsdogs.inference.photo_pyfunc import MAX_PHOTOS_PER_REQUEST, pyfunc_sender
    from catsdogs.tracking import store

    store.connect()
    rows = pd.read_csv(args.photos_from)
    paths = [args.images / p for p in rows.loc[rows["split"] == "test", "path"]]
    photos = [(str(p), p.read_bytes()) for p in paths]
    # `catsdogs predict` with the same registered model, loaded here: the answers to match.
    local = pyfunc_sender(mlflow.pyfunc.load_model(args.model))
    reference = {}
    for start in range(0, len(photos), 32):
        chunk = photos[start:start + 32]
        reference.update(zip([n for n, _ in chunk], local([d for _, d in chunk]), strict=True))
    machine = f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    print(f"{len(photos)} test photos, {sum(len(d) for _, d in photos) / len(photos) / 1024:.0f} KB "
          f"each on average; {machine}; model {args.model}", flush=True)

    deadline = time.monotonic() + args.time_limit
    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    levels = []
    with tempfile.TemporaryDirectory() as tmp:
        bad = bad_requests(photos[0][1], MAX_PHOTOS_PER_REQUEST, Path(tmp))
        started = time.perf_counter()
        server = start_server(args.model, port, Path(tmp) / "serve.log")
        print(f"server up in {time.perf_counter() - started:.1f} s", flush=True)
        memory = MemoryWatch(server.pid)
        try:
            sizes = [int(n) for n in args.photos_per_request.split(",")]
            for size in sizes:  # the first batch of a size builds the model's graph for it
                post(url, photos_json([data for _, data in photos[:size]]))
            idle = round(memory.now() / 2**20)
            for round_ in range(1, args.rounds + 1):
                for per_request in sizes:
                    for clients in map(int, args.clients.split(",")):
                        if time.monotonic() > deadline:
                            levels.append({"round": round_, "photos_per_request": per_request,
                                           "clients": clients, "skipped": "time limit"})
                            continue
                        count = args.requests if per_request == 1 else max(10, args.requests // 4)
                        level = {"round": round_, **run_level(
                            url, photos, reference, bad, per_request=per_request, clients=clients,
                            requests=count, deadline=deadline, memory=memory)}
                        levels.append(level)
                        print(json.dumps(level), flush=True)
        finally:
            memory.stop()
            stop_server(server)
            log_tail = (Path(tmp) / "serve.log").read_text(errors="replace")[-2000:]
    header = ("| round | photos a request | clients | requests | photos/s | p50 ms | p99 ms | "
              "wrong | failed good | bad → 4xx | server MB peak / after |")
    lines = [header, "|" + "---|" * 11]
    for level in levels:
        if "skipped" in level:
            lines.append(f"| {level['round']} | {level['photos_per_request']} | "
                         f"{level['clients']} | skipped: {level['skipped']} |||||||")
            continue
        lines.append(
            f"| {level['round']} | {level['photos_per_request']} | {level['clients']} | "
            f"{level['sent']} | "
            f"{level['photos_per_s']} | {level['p50_ms']} | {level['p99_ms']} | "
            f"{level['wrong_answers']} | {level['failed_good_requests']} | "
            f"{level['bad_answered_4xx']} of {level['bad_requests']} | "
            f"{level['server_peak_mb']} / {level['server_after_mb']} |")
    print(f"\nserver idle after its first request: {idle} MB\n" + "\n".join(lines))
    done = [level for level in levels if "skipped" not in level]
    failed = any(level["wrong_answers"] or level["failed_good_requests"]
                 or level["bad_answered_4xx"] != level["bad_requests"] for level in done)
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "machine": machine, "photos":
                                        len(photos), "server_idle_mb": idle, "levels": levels},
                                       indent=2) + "\n")
    if failed:
        print("FAILED: a wrong answer, a failed good request or a bad request not answered 4xx; "
              "the server's log ends:\n" + log_tail)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
