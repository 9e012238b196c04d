"""Every write to the tracking store whole: Ctrl-C waits for it, a locked SQLite file is retried.

A KeyboardInterrupt in the middle of a SQLite transaction leaves the database locked, and the
run could then no longer be marked KILLED. So every module of catsdogs.tracking writes
through `write`, and holds Ctrl-C (`holding_interrupts`) around writes that must happen
together. Reads and writes nothing itself: it owns SIGINT's handler while a write runs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from mlflow.exceptions import MlflowException

T = TypeVar("T")


_held = {"depth": 0, "pending": False}


@contextmanager
def holding_interrupts() -> Iterator[None]:
    """Defer SIGINT to the end of the block (re-entrant; the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = _held["depth"] == 0
    previous = None
    if outermost:
        _held["pending"] = False
        previous = signal.signal(signal.SIGINT, lambda signum, frame: _held.update(pending=True))
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if outermost:
            signal.signal(signal.SIGINT, previous)
            if _held["pending"]:
                _held["pending"] = False
                raise KeyboardInterrupt


def write(call: Callable[[], T], attempts: int = 5) -> T:
    """Run one store write whole: Ctrl-C waits for it, a locked SQLite file is retried."""
    with holding_interrupts():
        for attempt in range(attempts):
            try:
                return call()
            except MlflowException as error:
                if "locked" not in str(error).lower() or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
