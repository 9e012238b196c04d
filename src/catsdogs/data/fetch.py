"""Get one file from the first of a source's mirrors that works, hashing it on the way.

Reads an https/http URL (with the user name and password in it, or in ~/.netrc) or a local
file or file:// URL, and writes it to the path asked for, streamed in chunks while its sha256
is taken. Remote sources are retried with exponential backoff on connection errors, timeouts
and 5xx answers. A local folder is not copied here: it is handed on (`Fetched.local_folder`)
for `archives.copy_folder`. Used by the download stage and for the pretrained weights.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import netrc
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from catsdogs.data.sources import DownloadError, local_path, recorded_source, shown

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
OFFLINE_HINT = (
    "To use a local copy, set download.url to its path or file:// URL, e.g. "
    "dvc exp run -S 'download.url=/path/to/cats_and_dogs_filtered.zip' "
    "(or edit params.yaml)."
)


class _RetryableError(Exception):
    """A failure worth another try: connection trouble or a 5xx answer."""


@dataclass(frozen=True)
class Fetched:
    """What was fetched: the source that worked, its sha256 and size in bytes, what kind of
    source it was (zip, tar, folder), and the name it was given ("" for a single source).

    For a folder, the sha256 is of its listing: each file's path and sha256, in path order.
    """

    source: str
    sha256: str
    size: int
    kind: str = "file"
    name: str = ""
    local_folder: Path | None = None

    def record(self) -> dict[str, object]:
        """The facts metrics/download.json keeps about this source: `folder` (where the split
        stage finds it), `source` as recorded_source words it, whether it was `local`, its
        kind, sha256 and size."""
        return {"name": self.name, "folder": self.name or ".",
                "source": recorded_source(self.source),
                "local": local_path(self.source) is not None,
                "kind": self.kind, "sha256": self.sha256, "size_bytes": self.size}


def _credentials(url: str) -> tuple[str, str | None]:
    """(`url` without a user name or password, the Basic Authorization header's value or
    None): from the URL's own `user:password@`, else from ~/.netrc (or the file $NETRC
    names) for its host, as curl, wget and pip read it."""
    parsed = urllib.parse.urlsplit(url)
    user, password = parsed.username, parsed.password
    if user is not None or password is not None:
        netloc = parsed.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
        user, password = urllib.parse.unquote(user or ""), urllib.parse.unquote(password or "")
    else:
        try:
            entry = netrc.netrc(os.environ.get("NETRC")).authenticators(parsed.hostname or "")
        except FileNotFoundError:
            entry = None
        except (netrc.NetrcParseError, OSError) as error:
            log.warning("netrc not read (%s): downloading without its credentials", error)
            entry = None
        if entry is None:
            return url, None
        user, _, password = entry
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    return url, f"Basic {token}"


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
    url, authorization = _credentials(url)
    request = urllib.request.Request(url, headers={"User-Agent": "catsdogs"})
    if authorization:
        # Not sent on to where a redirect leads (another host, e.g. a storage bucket).
        request.add_unredirected_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            with dest.open("wb") as out:
                digest, size = _copy_hashing(response, out, int(length) if length else None,
                                             shown(url))
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
    path = local_path(source)
    if path is not None:
        if not path.is_file():
            raise DownloadError(f"local file or folder '{path}' does not exist")
        with path.open("rb") as reader, dest.open("wb") as writer:
            return _copy_hashing(reader, writer, path.stat().st_size, path.name)
    for attempt in range(retries + 1):
        try:
            return _fetch_http(source, dest, timeout_s)
        except _RetryableError as error:
            if attempt == retries:
                raise DownloadError(f"{error} (after {retries + 1} attempts)") from error
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s", shown(source), error, wait)
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
    what: str = "the data set",
    hint: str = OFFLINE_HINT,
) -> Fetched:
    """Fetch the first source that works into `dest`, hashing it on the way.

    A local folder is not copied here: it is returned as `local_folder`, for the download to
    copy (`archives.copy_folder`).
    Remote sources are retried with exponential backoff on connection errors, timeouts and
    5xx answers; a 4xx answer moves straight on to the next source. Raises DownloadError
    naming every source that failed and how to use a local copy (`hint`).
    """
    if not sources:
        raise DownloadError("no download source given; " + hint)
    failures = []
    for source in sources:
        try:
            local = local_path(source)
            if local is not None and local.is_dir():
                return Fetched(source=source, sha256="", size=0, kind="folder", local_folder=local)
            digest, size = _fetch_one(source, dest, timeout_s, retries, backoff_s, sleep)
        except DownloadError as error:
            log.warning("%s failed: %s", shown(source), error)
            failures.append(f"  {shown(source)}: {error}")
            continue
        log.info("fetched %s: %s bytes, sha256 %s", shown(source), f"{size:,}", digest)
        return Fetched(source=source, sha256=digest, size=size)
    raise DownloadError(f"could not fetch {what} from:\n" + "\n".join(failures) + "\n" + hint)
