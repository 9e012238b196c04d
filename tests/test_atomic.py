"""Replacing an output: at any moment a kill leaves the old or the new version whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catsdogs.core import atomic
from catsdogs.core.atomic import atomic_dir, recover


def version(folder: Path, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text(text)
    (folder / "b.txt").write_text(text)


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("killed_before_rename", [1, 2])
def test_a_kill_before_the_new_version_moves_in_leaves_the_old_one_whole(
    tmp_path: Path, monkeypatch, killed_before_rename: int
) -> None:
    # Rename 1 moves the old version aside, rename 2 moves the new one in.
    target = tmp_path / "model"
    version(target, "old")
    real_replace, calls = os.replace, []

    def dies_at_a_rename(src, dst):
        calls.append(dst)
        if len(calls) == killed_before_rename:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", dies_at_a_rename)
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
        (tmp / "b.txt").write_text("new")
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    # The old version is whole, in place or aside; the next run brings it back.
    assert {"a.txt": "old", "b.txt": "old"} in [contents(p) for p in tmp_path.iterdir()]
    recover(target)
    assert contents(target) == {"a.txt": "old", "b.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing left aside


def test_a_kill_before_the_old_version_is_removed_leaves_the_new_one(tmp_path: Path,
                                                                      monkeypatch) -> None:
    target = tmp_path / "model"
    version(target, "old")

    def dies(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_remove", dies)
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert contents(target) == {"a.txt": "new"}
    with atomic_dir(target) as tmp:  # the next replacement clears what was left aside
        (tmp / "a.txt").write_text("newer")
    assert contents(target) == {"a.txt": "newer"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
