"""Keras callbacks of a fit: Ctrl-C that stops it, each epoch's time, each epoch's resume state.

`InterruptsThatStick` turns SIGINT into a KeyboardInterrupt at the next batch boundary;
`EpochTimer` times whole epochs; `EpochCheckpoint` hands the model's and optimizer's variables
and the history so far to a save function after each epoch (`catsdogs.training.resume` writes
them). Writes nothing itself.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import keras
import pandas as pd

from catsdogs.training.history import EPOCH_METRICS, HISTORY_COLUMNS
from catsdogs.training.resume import SavedState

log = logging.getLogger(__name__)


class InterruptsThatStick(keras.callbacks.Callback):
    """Ctrl-C during fit() stops it at the next batch boundary, and always stops it.

    A KeyboardInterrupt raised wherever the main thread happens to be lands inside
    TensorFlow's own Python code (a train step's call, the input pipeline's iterator),
    which does not expect it: the process can die there of a corrupted heap ("free():
    invalid next size") before the MLflow run is ended, or Keras can swallow it in the bare
    `except:` of keras.src.utils.python_utils.pythonify_logs and run on to the last epoch.
    So while fit() runs, the first SIGINT is only remembered and raised from a callback, at
    the next batch's start or end; a second one raises at once, for a batch that hangs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Remember SIGINT within the block; main thread only (signals arrive only there)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def remember(signum: int, frame: Any) -> None:
            if self.interrupted:  # asked twice: stop now, wherever that is
                raise KeyboardInterrupt
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, remember)
        try:
            yield
        finally:
            # None: a handler set outside Python; the default is the closest we can give back.
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        self._raise_if_interrupted()  # one that came after the last batch

    def _raise_if_interrupted(self, *_: Any, **__: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_begin = on_test_batch_begin = on_predict_batch_begin = _raise_if_interrupted
    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_interrupted
    on_epoch_begin = on_epoch_end = _raise_if_interrupted


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each whole epoch: its training pass and its validation."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch, save what the training needs to go on (`Resume.save`): every
    model and optimizer variable, and the history so far. Runs after the timer, which it
    reads, and before the epoch hooks (a Ctrl-C held through a tracking write is raised as
    that write ends: the epoch is saved by then). A save that fails (a full disk) is said
    once and saving stops: resume state changes no number, so the training goes on."""

    def __init__(self, save: Callable[[SavedState], None], earlier: pd.DataFrame | None,
                 timer: EpochTimer) -> None:
        super().__init__()
        self.save, self.timer, self.failed = save, timer, False
        self.rows = [] if earlier is None else earlier.to_dict("records")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.rows.append({"epoch": epoch + 1, **{k: float(logs[k]) for k in EPOCH_METRICS},
                          "seconds": round(self.timer.seconds[-1], 3)})
        if self.failed:
            return
        model = self.model
        try:
            self.save(SavedState(
                epoch=epoch + 1, model_variables=[v.numpy() for v in model.variables],
                optimizer_variables=[v.numpy() for v in model.optimizer.variables],
                history=pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)))
        except OSError as error:
            self.failed = True
            log.warning("cannot save the resume state after epoch %d (%s): training goes on "
                        "without it", epoch + 1, error)
