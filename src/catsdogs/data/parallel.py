"""Every core on a long job: a function over many items, in order, with a progress bar.

Measured on 2,000 tutorial photos on a 2-core EPYC (decode and resize to 160 px, the work of
the split's checks and the decoded-image cache): one thread 1,105 photos/s, two threads
1,730, two processes 2,065. Pillow lets go of the GIL while it decodes, not while it
transposes and converts, so processes win; but starting them costs about a second, so a
small job stays on threads. Processes are started with 'spawn': the training process runs
TensorFlow's threads, which a fork would copy half-alive. The function must then be a
module-level one whose module does not import TensorFlow; and a spawned process imports the
main script, so a script that does its work outside `if __name__ == "__main__"` gets threads.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Fewer items than this run on threads.
PROCESS_THRESHOLD = 1000
# Items handed to a process at a time: amortises the pickling, keeps the bar moving.
CHUNK = 32
# Jobs this long get a progress bar (stderr, refreshed every few seconds).
PROGRESS_THRESHOLD = 2000


def _ignore_interrupts() -> None:
    """In a worker process: Ctrl-C is the parent's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main_is_guarded() -> bool:
    """Whether a spawned process may import the main script: it has none (`python -c`, a
    REPL), or the script runs its work under `if __name__ == "__main__"`. A spawned worker
    imports the main script first; an unguarded one would run its work again there."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return True
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"""__name__\s*==\s*['"]__main__['"]""", source) is not None


def _pool(count: int) -> Executor:
    workers = os.cpu_count() or 1
    if count < PROCESS_THRESHOLD or workers < 2 or not _main_is_guarded():
        return ThreadPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts,
                               mp_context=multiprocessing.get_context("spawn"))


def ordered_map(function: Callable[[T], R], items: Iterable[T], *, label: str,
                weight: Callable[[T], int] | None = None) -> list[R]:
    """`function` of each item, in the items' order, on every core.

    `label` names the job on the progress bar; `weight` counts an item's units for the bar
    (an item that is a chunk of photos counts its photos). An exception in any item is
    raised here, the pool stopped.
    """
    items = list(items)
    total = sum(map(weight, items)) if weight else len(items)
    bar = _progress(total, label)
    results: list[R] = []
    pool = _pool(len(items) if weight is None else total)
    try:
        chunksize = 1 if weight else CHUNK
        for item, result in zip(items, pool.map(function, items, chunksize=chunksize), strict=True):
            results.append(result)
            if bar is not None:
                bar.update(weight(item) if weight else 1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return results


def _progress(total: int, label: str) -> Any:
    """A tqdm bar for long jobs; None for short ones."""
    if total < PROGRESS_THRESHOLD:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="photo", file=sys.stderr, mininterval=3.0)
