"""Fetch the photo collections and unpack them safely: the download stage's work.

Each source is fetched from the first of its mirrors that works (`fetch`), its sha256 verified
when params give one, and unpacked (`archives`): a single source into the data folder itself,
several named ones each into a folder of its name. Archives are streamed to a temporary file
while hashed; a folder is copied while hashed. Writes only the data folder, all or nothing;
returns what was fetched (`Fetched`), for the stage's record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from catsdogs.core.atomic import atomic_dir, put_in_place
from catsdogs.data.archives import copy_folder, unpack
from catsdogs.data.fetch import Fetched, fetch
from catsdogs.data.sources import DownloadError, Source, local_path, shown


def download(
    sources: Sequence[str],
    out_dir: Path,
    *,
    sha256: str | None,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    max_files: int,
    max_bytes: int,
    sleep: Callable[[float], None] = time.sleep,
    name: str = "",
) -> Fetched:
    """Fetch one source (the first of its mirrors that works), verify it against `sha256`
    when given, and unpack it (zip, tar or folder) into `out_dir`.

    Nothing is left in `out_dir` on failure; a fetched archive itself is not kept.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive"
        fetched = fetch(
            sources, archive, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
            sleep=sleep,
        )
        caps = {"max_files": max_files, "max_bytes": max_bytes}
        if fetched.local_folder is not None:
            _refuse_overlap(fetched.local_folder, out_dir)
            # A folder is hashed as it is copied: check the digest before it replaces out_dir.
            staged = Path(tmp) / "folder"
            digest, size = copy_folder(fetched.local_folder, staged, **caps)
            fetched = Fetched(fetched.source, digest, size, "folder", name)
            _verify(fetched, sha256)
            put_in_place(staged, out_dir)
        else:
            _verify(fetched, sha256)  # first: a pinned digest says more than a format error
            kind = unpack(archive, out_dir, source=fetched.source, **caps)
            fetched = Fetched(fetched.source, fetched.sha256, fetched.size, kind, name)
    return fetched


def _refuse_overlap(folder: Path, out_dir: Path) -> None:
    """A folder source inside the output (replaced by the copy) or holding it (copied into
    itself) would be lost or nest without end: refuse it, naming both."""
    source, out = folder.resolve(), out_dir.resolve()
    if source == out or out in source.parents or source in out.parents:
        raise DownloadError(
            f"the folder source '{folder}' overlaps the download folder '{out_dir}', which is "
            "replaced on every run; keep your photos outside it (e.g. ~/Pictures/pets)")


def _verify(fetched: Fetched, sha256: str | None) -> None:
    if sha256 is not None and fetched.sha256 != sha256.lower():
        setting = f"download.sha256.{fetched.name}" if fetched.name else "download.sha256"
        raise DownloadError(
            f"sha256 mismatch for {shown(fetched.source)}: expected {sha256}, got "
            f"{fetched.sha256}. The {fetched.kind} changed or is corrupt; if it is the copy "
            f"you trust, set {setting} to the new value."
        )


def download_all(
    sources: Sequence[Source],
    out_dir: Path,
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    max_files: int,
    max_bytes: int,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Fetched]:
    """Fetch and unpack every source: a single unnamed source into `out_dir` itself, named
    ones each into `out_dir/<name>`. All or nothing: `out_dir` is replaced only when every
    source worked."""
    # Checked against the whole download folder first: a named source's own folder is a
    # temporary one, and the replacement at the end would delete a source inside out_dir.
    for source in sources:
        for mirror in source.mirrors:
            try:
                local = local_path(mirror)
            except DownloadError:  # an unsupported scheme fails when its turn comes
                continue
            if local is not None and local.is_dir():
                _refuse_overlap(local, out_dir)
    options = {"timeout_s": timeout_s, "retries": retries, "backoff_s": backoff_s,
               "max_files": max_files, "max_bytes": max_bytes, "sleep": sleep}
    if len(sources) == 1 and not sources[0].name:
        return [download(sources[0].mirrors, out_dir, sha256=sources[0].sha256, **options)]
    fetched = []
    with atomic_dir(out_dir) as tmp:
        for source in sources:
            fetched.append(download(source.mirrors, tmp / source.name, sha256=source.sha256,
                                    name=source.name, **options))
    return fetched
