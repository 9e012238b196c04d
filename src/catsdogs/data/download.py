"""Fetch the data set archive and unpack it safely.

Reads one of several sources (https/http URL, file:// URL or local path), streams it to a
temporary file while hashing it, optionally verifies its sha256, and extracts the zip into a
folder atomically, refusing archives that would write outside it or blow up in size.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, BinaryIO

from catsdogs.atomic import atomic_dir
from catsdogs.config import Range
from catsdogs.errors import UserError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
OFFLINE_HINT = (
    "To use a local copy, set download.url to its path or file:// URL, e.g. "
    "dvc exp run -S 'download.url=/path/to/cats_and_dogs_filtered.zip' "
    "(or edit params.yaml)."
)


class DownloadError(UserError):
    """No source could be fetched, or what was fetched is not what params promise."""


class UnsafeArchiveError(UserError, ValueError):
    """The archive is not a zip, or an entry would escape, link out or exceed a cap."""


class _RetryableError(Exception):
    """A failure worth another try: connection trouble or a 5xx answer."""


@dataclass(frozen=True)
class DownloadConfig:
    """The `download` params section."""

    url: str | tuple[str, ...]
    sha256: str | None = None
    timeout_s: Annotated[float, Range(0, low_open=True)] = 30.0
    retries: Annotated[int, Range(0)] = 3
    backoff_s: Annotated[float, Range(0)] = 1.0
    max_files: Annotated[int, Range(1)] = 10_000
    max_bytes: Annotated[int, Range(1)] = 1_000_000_000

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources to try, in order."""
        return (self.url,) if isinstance(self.url, str) else self.url


@dataclass(frozen=True)
class Fetched:
    """What was fetched: the source that worked, the bytes' sha256 and their size."""

    source: str
    sha256: str
    size: int


def _local_path(source: str) -> Path | None:
    """The filesystem path a source names, or None for a remote URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, a path
        raise DownloadError(
            f"unsupported source '{source}': use an https://, http:// or file:// URL, "
            "or a local path"
        )
    return Path(source).expanduser()


def _copy_hashing(
    reader: BinaryIO, writer: BinaryIO, total: int | None, label: str
) -> tuple[str, int]:
    """Copy reader to writer in chunks; return (sha256, bytes). Shows progress on a tty."""
    digest = hashlib.sha256()
    size = 0
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label)
    next_log = 0.0
    started = time.monotonic()
    try:
        while chunk := reader.read(CHUNK_BYTES):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            elif time.monotonic() >= next_log:
                # Quiet, periodic log lines when nobody watches a terminal (CI, dvc logs).
                rate = size / max(time.monotonic() - started, 1e-6)
                of = f" of {total:,}" if total else ""
                log.info("%s: %s%s bytes (%.1f MB/s)", label, f"{size:,}", of, rate / 1e6)
                next_log = time.monotonic() + 5.0
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest(), size


def _fetch_http(url: str, dest: Path, timeout_s: float) -> tuple[str, int]:
    request = urllib.request.Request(url, headers={"User-Agent": "catsdogs"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            with dest.open("wb") as out:
                digest, size = _copy_hashing(response, out, int(length) if length else None, url)
            if length and size != int(length):
                raise _RetryableError(f"connection closed after {size} of {length} bytes")
            return digest, size
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise _RetryableError(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _RetryableError(str(reason)) from error


def _fetch_one(
    source: str,
    dest: Path,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> tuple[str, int]:
    path = _local_path(source)
    if path is not None:
        if not path.is_file():
            raise DownloadError(f"local file '{path}' does not exist")
        with path.open("rb") as reader, dest.open("wb") as writer:
            return _copy_hashing(reader, writer, path.stat().st_size, path.name)
    for attempt in range(retries + 1):
        try:
            return _fetch_http(source, dest, timeout_s)
        except _RetryableError as error:
            if attempt == retries:
                raise DownloadError(f"{error} (after {retries + 1} attempts)") from error
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s", source, error, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def fetch(
    sources: Sequence[str],
    dest: Path,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Fetch the first source that works into `dest`, hashing it on the way.

    Remote sources are retried with exponential backoff on connection errors, timeouts and
    5xx answers; a 4xx answer moves straight on to the next source. Raises DownloadError
    naming every source that failed and how to use a local copy.
    """
    if not sources:
        raise DownloadError("no download source given; " + OFFLINE_HINT)
    failures = []
    for source in sources:
        try:
            digest, size = _fetch_one(source, dest, timeout_s, retries, backoff_s, sleep)
        except DownloadError as error:
            log.warning("%s failed: %s", source, error)
            failures.append(f"  {source}: {error}")
            continue
        log.info("fetched %s: %s bytes, sha256 %s", source, f"{size:,}", digest)
        return Fetched(source=source, sha256=digest, size=size)
    raise DownloadError(
        "could not fetch the data set from:\n" + "\n".join(failures) + "\n" + OFFLINE_HINT
    )


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive entry '{name}' has an absolute path; refusing it")
    if ".." in posix.parts:
        raise UnsafeArchiveError(f"archive entry '{name}' climbs out with '..'; refusing it")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"archive entry '{name}' is a symbolic link; refusing it")


def extract(archive: Path, out_dir: Path, *, max_files: int, max_bytes: int) -> int:
    """Extract a zip into `out_dir` atomically; return the number of files written.

    Refuses (UnsafeArchiveError, naming the entry) anything that is not a zip, entries with
    absolute paths, '..' or symlinks, and archives with more than `max_files` files or more
    than `max_bytes` uncompressed bytes (counted as written, not as the headers claim).
    """
    if not zipfile.is_zipfile(archive):
        raise UnsafeArchiveError(
            f"'{archive}' is not a zip archive (truncated, or another format); "
            "check the download source"
        )
    with zipfile.ZipFile(archive) as zf, atomic_dir(out_dir) as tmp:
        infos = zf.infolist()
        files = [i for i in infos if not i.is_dir()]
        for info in infos:
            _check_entry(info)
        if len(files) > max_files:
            raise UnsafeArchiveError(
                f"archive has {len(files)} files, over the cap of {max_files} "
                "(download.max_files)"
            )
        written = 0
        for info in infos:
            target = tmp / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, target.open("wb") as dst:
                    while chunk := src.read(CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UnsafeArchiveError(
                                f"archive entry '{info.filename}' takes the uncompressed size "
                                f"over the cap of {max_bytes:,} bytes (download.max_bytes)"
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError) as error:
                raise UnsafeArchiveError(
                    f"archive entry '{info.filename}' is corrupt: {error}"
                ) from error
    log.info("extracted %d files (%s bytes) into %s", len(files), f"{written:,}", out_dir)
    return len(files)


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
) -> Fetched:
    """Fetch the archive, verify it against `sha256` when given, extract it into `out_dir`.

    Nothing is left in `out_dir` on failure; the archive itself is not kept.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.zip"
        fetched = fetch(
            sources, archive, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
            sleep=sleep,
        )
        if sha256 is not None and fetched.sha256 != sha256.lower():
            raise DownloadError(
                f"sha256 mismatch for {fetched.source}: expected {sha256}, got "
                f"{fetched.sha256}. The file changed or is corrupt; if it is the copy you "
                "trust, set download.sha256 to the new value."
            )
        extract(archive, out_dir, max_files=max_files, max_bytes=max_bytes)
    return fetched
