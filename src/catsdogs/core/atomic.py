"""Atomic outputs: write to a temporary sibling, rename into place only on success.

A stage killed half-way (an error, SIGINT, a full disk) leaves the previous output or none,
never a half-written one that the next `dvc repro` or a user could mistake for a result.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _aside(target: Path) -> Path:
    """Where `put_in_place` keeps the old version of `target` while the new one moves in."""
    return target.with_name(f".{target.name}.replaced")


def _there(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def recover(target: str | Path) -> None:
    """Finish a replacement of `target` that a kill cut short: where the new version never
    arrived, the old one goes back in place; where it did, the old one is removed."""
    target = Path(target)
    old = _aside(target)
    if not _there(old):
        return
    if _there(target):
        _remove(old)
    else:
        os.replace(old, target)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `target` when the block succeeds.

    On any exception, KeyboardInterrupt included, the temporary folder is removed and
    `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        put_in_place(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def put_in_place(built: Path, target: Path) -> None:
    """Replace `target` (a file, a folder or nothing) with `built`, made aside on the same
    file system. A folder cannot be renamed over another, so the old version first moves
    aside whole, then the new one moves in, then the old one is removed: a kill at any
    moment leaves one of the two whole, and `recover` (run by the next replacement) puts
    the old one back if the new one never arrived."""
    recover(target)
    old = _aside(target)
    if _there(target):
        os.replace(target, old)
    os.replace(built, target)
    _remove(old)


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it is renamed onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(target: str | Path, data: Any, *, sort_keys: bool = True) -> None:
    """Write `data` as indented JSON, atomically, keys sorted unless their order is meant
    (stable bytes for git diffs either way)."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def write_text(target: str | Path, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(target: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV atomically, no index, '\\n' line ends: byte-stable output."""
    with atomic_file(target) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")
