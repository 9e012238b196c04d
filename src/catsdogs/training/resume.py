"""Resume state of a training: what it needs to go on after its last whole epoch.

A train or fine-tune stage that dies (Ctrl-C, the OOM killer, a reboot) would otherwise
start its model again from epoch 1: DVC deletes a stage's outputs before running it, and
DVC 3 keeps no checkpoints. After every epoch the training saves here the values of every
model and optimizer variable (weights, the optimizer's moments and step count, and the
seed-generator states of augmentation and dropout layers), the epoch and the history so far.
Seeded and deterministic, the resumed training then ends with the very model an
uninterrupted one makes (`catsdogs.training.fit.fit` restores the input pipeline's shuffle).

Layout, under the project root the stage runs in (a queued or `--temp` experiment runs in
its own copy under .dvc/tmp): `.catsdogs/resume/<model>/<digest>/epoch-<k>/`, where the
digest covers everything that decides the training (`training_digest`): state made under
other params, other inputs, other code or on another kind of machine is never read, and
saving removes it (one state per model). Each epoch's state is written in a temporary
folder and renamed into place before the previous epoch's is removed: a kill at any moment
leaves a whole state or none, never a half-written one. A lock file keeps two processes
(queued workers) from sharing one model's state. Reads and writes only that folder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catsdogs.core.atomic import atomic_dir

log = logging.getLogger(__name__)

# Under the project root: outside every stage's DVC outputs, ignored by git.
RESUME_DIR = Path(".catsdogs/resume")
_EPOCH = re.compile(r"epoch-(\d+)")
_MODEL_FILE, _OPTIMIZER_FILE, _HISTORY_FILE, _INFO_FILE = (
    "model.npz", "optimizer.npz", "history.csv", "state.json")


def training_digest(settings: Mapping[str, Any], files: Iterable[Path], code: Iterable[Path],
                    machine_fingerprint: str) -> str:
    """A digest of what decides a training: its settings (params), the contents of the files
    it reads (manifest, photos, a model to fine-tune, pretrained weights) and of its code,
    and the machine's fingerprint (`catsdogs.core.machine`: another kind of CPU computes other
    numbers, and a resumed training must not mix two machines' arithmetic)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(machine_fingerprint.encode())
    for kind, paths in (("file", files), ("code", code)):
        for path in sorted(Path(p) for p in paths):
            file_hash = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    file_hash.update(chunk)
            # Code by its name too; data by content alone (the same photos elsewhere).
            name = path.name if kind == "code" else ""
            digest.update(f"{kind}:{name}:{file_hash.hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SavedState:
    """A training's state after its `epoch`-th whole epoch, and the MLflow run that made it."""

    epoch: int
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    history: pd.DataFrame
    run_id: str | None = None


def _fsync(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


class ResumeState:
    """One model's resume state for one digest, in `root`/<model>/<digest>/."""

    def __init__(self, root: Path, model: str, digest: str) -> None:
        self.folder = Path(root) / model
        self.digest = digest

    @property
    def _current(self) -> Path:
        return self.folder / self.digest

    def _epochs(self) -> list[tuple[int, Path]]:
        """This digest's whole states (renamed into place), oldest first."""
        if not self._current.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self._current.iterdir()
                 if (m := _EPOCH.fullmatch(p.name)) and (p / _INFO_FILE).is_file()]
        return sorted(found)

    def load(self) -> SavedState | None:
        """The state after the last saved epoch under this digest, or None: nothing saved, or
        what is there cannot be read (said in the log, and it is not used)."""
        for epoch, path in reversed(self._epochs()):
            try:
                info = json.loads((path / _INFO_FILE).read_text())
                return SavedState(
                    epoch=epoch, model_variables=_arrays(path / _MODEL_FILE),
                    optimizer_variables=_arrays(path / _OPTIMIZER_FILE),
                    history=pd.read_csv(path / _HISTORY_FILE), run_id=info.get("run_id"))
            except Exception as error:  # any damage (a cut-short zip, an empty file): skip it
                log.warning("resume state %s cannot be read (%s: %s): removed, not used", path,
                            type(error).__name__, error)
                shutil.rmtree(path, ignore_errors=True)
        return None

    def save(self, state: SavedState) -> None:
        """Put `state` in place, then remove earlier epochs, other digests' states and
        temporary folders a kill left behind."""
        target = self._current / f"epoch-{state.epoch:04d}"
        with atomic_dir(target) as tmp:
            np.savez(tmp / _MODEL_FILE, *state.model_variables)
            np.savez(tmp / _OPTIMIZER_FILE, *state.optimizer_variables)
            state.history.to_csv(tmp / _HISTORY_FILE, index=False)
            # Last: a folder renamed into place holds every file.
            (tmp / _INFO_FILE).write_text(json.dumps(
                {"epoch": state.epoch, "digest": self.digest, "run_id": state.run_id}))
            # On disk before the rename, and before the previous epoch's state goes: a power
            # cut must not leave a renamed folder of empty files as the only state.
            _fsync(*tmp.iterdir(), tmp)
        _fsync(self._current)
        for path in [*self._current.iterdir(), *self.folder.iterdir()]:
            if path not in (target, self._current) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def clear(self) -> None:
        """Remove this model's resume state (any digest): its training is done."""
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def claimed(root: Path, model: str, digest: str) -> Iterator[ResumeState | None]:
    """`model`'s resume state under `root`, held by this process for the block; None (said
    in the log) while another process holds it: that training then neither reads nor
    writes it, and starts from epoch 1."""
    folder = Path(root) / model
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Beside the model's folder, so clearing the state does not remove a held lock.
    lock_path = folder.parent / f".{model}.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                log.warning("the resume state of %s in %s is in use by another process: this "
                            "training starts from epoch 1 and keeps no resume state", model,
                            folder)
            else:  # a file system without locks (some NFS): no sharing to guard, no state
                log.warning("cannot lock %s (%s): this training keeps no resume state",
                            lock_path, error)
            yield None
            return
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield ResumeState(root, model, digest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
