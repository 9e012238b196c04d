"""Fetch the photo collections and unpack them safely.

A source is an https/http URL, a file:// URL or a local path, of a zip, a tar (.tar, .tar.gz,
.tgz, .tar.bz2, .tar.xz) or a folder; a list of them is mirrors of one source, tried in order.
Several named sources combine into one collection, each unpacked into a folder of its name.
Archives are streamed to a temporary file while hashed; a folder is copied while hashed. The
sha256 is verified when params give one, and every source is unpacked atomically, refusing
entries that would write outside the folder, links, devices, and more files or bytes than the
caps allow.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import netrc
import os
import re
import stat
import sys
import tarfile
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

from catsdogs.core.atomic import atomic_dir, put_in_place
from catsdogs.core.errors import UserError
from catsdogs.core.params import Range
from catsdogs.data.layouts import is_hidden

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# Photos barely compress (a JPEG zips at about 1:1); a decompression bomb expands a
# thousandfold. An archive entry (a zip's, by its header) or a whole tar (by its size) may
# expand at most this many times, plus RATIO_SLACK bytes, so small text files never trip it.
MAX_RATIO = 100
RATIO_SLACK = 1 << 20
# The compression methods Python's zipfile reads (Deflate64, method 9, is not one).
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
ZIP_METHOD_NAMES = {9: "Deflate64 (what Windows Explorer writes for big folders)", 98: "PPMd",
                    99: "AES encryption"}
UNPACK_IT_YOURSELF = ("unpack it yourself (7-Zip, or `unzip` with the password) and point "
                      "download.url, or `catsdogs evaluate`, at the folder")
OFFLINE_HINT = (
    "To use a local copy, set download.url to its path or file:// URL, e.g. "
    "dvc exp run -S 'download.url=/path/to/cats_and_dogs_filtered.zip' "
    "(or edit params.yaml)."
)


class DownloadError(UserError):
    """No source could be fetched, or what was fetched is not what params promise."""


class UnsafeArchiveError(UserError, ValueError):
    """Not a zip, tar or folder, or an entry would escape, link out or exceed a cap."""


class _RetryableError(Exception):
    """A failure worth another try: connection trouble or a 5xx answer."""


# A source's name is the folder it is unpacked into: one plain path component.
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Mirrors = str | tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """One source of photos: its name (its folder under the data folder; "" for a single
    source, unpacked at the top), its mirrors tried in order, and the sha256 to expect."""

    name: str
    mirrors: tuple[str, ...]
    sha256: str | None = None

    @property
    def folder(self) -> str:
        """Where the source lands, relative to the data folder."""
        return self.name or "."


@dataclass(frozen=True)
class DownloadConfig:
    """The `download` params section.

    `url` is one source (a string, or a list of mirrors of it) or several named ones
    ({name: source or mirrors}); `sha256` is then one digest or {name: digest}.
    """

    url: Mirrors | dict[str, Mirrors]
    sha256: str | dict[str, str | None] | None = None
    timeout_s: Annotated[float, Range(0, low_open=True)] = 30.0
    retries: Annotated[int, Range(0)] = 3
    backoff_s: Annotated[float, Range(0)] = 1.0
    # Caps for each source: far past real collections (Kaggle's 25,000-photo train.zip, the
    # README's 100,000 photos). Bombs are refused by what they are: see MAX_RATIO.
    max_files: Annotated[int, Range(1)] = 1_000_000
    max_bytes: Annotated[int, Range(1)] = 100_000_000_000

    @property
    def sources(self) -> tuple[Source, ...]:
        """The sources, each with its mirrors in order; refuses bad names and digests."""
        if not isinstance(self.url, dict):
            if isinstance(self.sha256, dict):
                raise DownloadError("download.sha256 is a mapping but download.url is one "
                                    "source; give one sha256, or name the sources in url")
            return (Source("", _as_tuple(self.url), self.sha256),)  # the tutorial's default
        if not self.url:
            raise DownloadError("download.url is an empty mapping; name at least one source")
        digests = self.sha256 if isinstance(self.sha256, dict) else {}
        if self.sha256 is not None and not isinstance(self.sha256, dict):
            raise DownloadError("download.url names several sources: give download.sha256 as "
                                "{name: sha256}, or null")
        unknown = sorted(set(digests) - set(self.url))
        if unknown:
            raise DownloadError(f"download.sha256 names {unknown}, which download.url does not "
                                f"have; its sources: {', '.join(self.url)}")
        for name in self.url:
            if not SOURCE_NAME.match(str(name)):
                raise DownloadError(
                    f"source name '{name}' in download.url cannot be a folder name; use "
                    "letters, digits, '_', '-' and '.', starting with a letter or digit")
        return tuple(Source(name, _as_tuple(mirrors), digests.get(name))
                     for name, mirrors in self.url.items())


def _as_tuple(mirrors: Mirrors) -> tuple[str, ...]:
    return (mirrors,) if isinstance(mirrors, str) else tuple(mirrors)


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
                "local": _local_path(self.source) is not None,
                "kind": self.kind, "sha256": self.sha256, "size_bytes": self.size}


def shown(source: str) -> str:
    """A source as logs, messages, MLflow and the record may show it: a URL without any user
    name or password, and with each query value (a `?token=...`) replaced by `***`."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme not in ("http", "https"):
        return source
    host = parsed.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    netloc = f"{host}:{parsed.port}" if parsed.port is not None else host
    query = "&".join(f"{key}=***" for key, _ in urllib.parse.parse_qsl(
        parsed.query, keep_blank_values=True))
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc, query=query))


def recorded_source(source: str) -> str:
    """A source as the committed record keeps it: a local path or file:// URL by its file or
    folder name alone, a URL as `shown` (no credentials, no query values).

    The record is committed and read on other machines, where this machine's folders mean
    nothing and should not be shown; the sha256 beside it says which file it was.
    """
    local = _local_path(source)
    if local is not None:
        return local.name or str(local)  # a root folder ("/") has no name
    return shown(source)


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
    path = _local_path(source)
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

    A local folder is not copied here: it is returned as `local_folder`, for `unpack`.
    Remote sources are retried with exponential backoff on connection errors, timeouts and
    5xx answers; a 4xx answer moves straight on to the next source. Raises DownloadError
    naming every source that failed and how to use a local copy (`hint`).
    """
    if not sources:
        raise DownloadError("no download source given; " + hint)
    failures = []
    for source in sources:
        try:
            local = _local_path(source)
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


def _check_name(name: str) -> None:
    """Refuse an entry name that is absolute or climbs out with '..'."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive entry '{name}' has an absolute path; refusing it")
    if ".." in posix.parts:
        raise UnsafeArchiveError(f"archive entry '{name}' climbs out with '..'; refusing it")


def _check_entry(info: zipfile.ZipInfo) -> None:
    _check_name(info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"archive entry '{info.filename}' is a symbolic link; refusing it")
    if info.flag_bits & 0x1:
        raise UnsafeArchiveError(f"archive entry '{info.filename}' is encrypted (a password-"
                                 f"protected zip), which this pipeline cannot read; "
                                 f"{UNPACK_IT_YOURSELF}")
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise UnsafeArchiveError(f"archive entry '{info.filename}' is compressed with {method}, "
                                 f"which Python's zipfile cannot read; {UNPACK_IT_YOURSELF}")
    if info.file_size > MAX_RATIO * info.compress_size + RATIO_SLACK:
        raise UnsafeArchiveError(
            f"archive entry '{info.filename}' claims {info.file_size:,} bytes from "
            f"{info.compress_size:,} compressed, over {MAX_RATIO} times: a decompression bomb, "
            "not photos; refusing it")


def _check_count(count: int, max_files: int, what: str) -> None:
    if count > max_files:
        raise UnsafeArchiveError(
            f"{what} has {count} files, over the cap of {max_files} (download.max_files)")


class _ByteBudget:
    """Counts bytes as they are written, refusing the one that takes them over the cap, or
    past `expands_to` (an archive's size times MAX_RATIO)."""

    def __init__(self, max_bytes: int, expands_to: int | None = None) -> None:
        self.max_bytes, self.expands_to, self.written = max_bytes, expands_to, 0

    def copy(self, reader: BinaryIO, target: Path, name: str) -> str:
        """Copy reader to target within the budget; return the copy's sha256."""
        digest = hashlib.sha256()
        with target.open("wb") as out:
            while chunk := reader.read(CHUNK_BYTES):
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise UnsafeArchiveError(
                        f"archive entry '{name}' takes the uncompressed size over the cap of "
                        f"{self.max_bytes:,} bytes (download.max_bytes)")
                if self.expands_to is not None and self.written > self.expands_to:
                    raise UnsafeArchiveError(
                        f"archive entry '{name}' takes the archive past {MAX_RATIO} times its "
                        "compressed size: a decompression bomb, not photos; refusing it")
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()


# An archive entry: its name, whether it is a folder, and how to open it for reading.
Entry = tuple[str, bool, Callable[[], BinaryIO]]


def _unpack_entries(entries: Sequence[Entry], out_dir: Path, *, max_files: int, max_bytes: int,
                    corrupt: tuple[type[BaseException], ...], expands_to: int | None = None) -> int:
    """Write checked archive entries into `out_dir` atomically, within the caps (and within
    `expands_to` bytes in all); an error of a `corrupt` type while reading an entry names it.
    Returns the number of files."""
    _check_count(sum(1 for _, is_dir, _ in entries if not is_dir), max_files, "archive")
    budget = _ByteBudget(max_bytes, expands_to)
    files = 0
    with atomic_dir(out_dir) as tmp:
        for name, is_dir, open_entry in entries:
            target = tmp / name.replace("\\", "/")  # a Windows zip's separators, checked above
            try:
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    raise FileExistsError(name)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
                raise UnsafeArchiveError(
                    f"archive entry '{name}' clashes with another entry of the same name (a "
                    "file and a folder, or a file twice); repack the archive") from error
            try:
                with open_entry() as reader:
                    budget.copy(reader, target, name)
            except corrupt as error:
                raise UnsafeArchiveError(f"archive entry '{name}' is corrupt: {error}") from error
            files += 1
    log.info("extracted %d files (%s bytes) into %s", files, f"{budget.written:,}", out_dir)
    return files


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
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_entry(info)
        declared = sum(info.file_size for info in infos)
        if declared > max_bytes:
            raise UnsafeArchiveError(
                f"'{archive}' declares {declared:,} bytes uncompressed, over the cap of "
                f"{max_bytes:,} bytes (download.max_bytes)")
        entries = [(i.filename, i.is_dir(), lambda i=i: zf.open(i)) for i in infos]
        return _unpack_entries(entries, out_dir, max_files=max_files, max_bytes=max_bytes,
                               corrupt=(zipfile.BadZipFile, EOFError))


def extract_tar(archive: Path, out_dir: Path, *, max_files: int, max_bytes: int) -> int:
    """Extract a tar (plain or gzip, bzip2, xz compressed) into `out_dir` atomically, with
    the guards of `extract`; links, devices and fifos are refused by name."""
    try:
        tf = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the `with` below, once open
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UnsafeArchiveError(f"'{archive}' is not a readable tar archive ({error})") from error
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as error:
            raise UnsafeArchiveError(f"tar archive '{archive}' is corrupt: {error}") from error
        for member in members:
            _check_name(member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(
                    f"archive entry '{member.name}' is a link; refusing it")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"archive entry '{member.name}' is a device or fifo, not a file; refusing it")
        entries = [(m.name, m.isdir(), lambda m=m: tf.extractfile(m)) for m in members]
        # A compressed tar has no per-entry sizes to judge: the whole may expand at most
        # MAX_RATIO times the archive (a plain tar never does).
        expands_to = MAX_RATIO * archive.stat().st_size + RATIO_SLACK
        # zlib.error and friends surface as tarfile.ReadError; EOFError is a truncated member.
        return _unpack_entries(entries, out_dir, max_files=max_files, max_bytes=max_bytes,
                               corrupt=(tarfile.TarError, EOFError), expands_to=expands_to)


def copy_folder(folder: Path, out_dir: Path, *, max_files: int, max_bytes: int) -> tuple[str, int]:
    """Copy a local folder into `out_dir` atomically; return (sha256 of its listing, bytes).

    The listing's sha256 covers each file's relative path and content sha256, in path order,
    so it changes when any photo is added, removed, renamed or edited; hidden files and
    folders are left out, as the split stage skips them. Symbolic links, devices
    and fifos are refused by name, as in archives, as are folders over the caps.
    """
    entries: list[Path] = []
    for current, dirs, names in os.walk(folder, followlinks=False):
        # Not photos (.DS_Store, .git, __MACOSX/): neither copied, counted nor hashed.
        dirs[:] = sorted(d for d in dirs if not is_hidden(Path(d)))
        for name in [*dirs, *(n for n in names if not is_hidden(Path(n)))]:
            path = Path(current) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(
                    f"'{path}' is a symbolic link; copy the photo itself into the folder")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UnsafeArchiveError(f"'{path}' is not a regular file; remove it")
            if stat.S_ISREG(mode):
                entries.append(path)
    entries.sort(key=lambda p: p.relative_to(folder).as_posix())
    _check_count(len(entries), max_files, f"folder '{folder}'")
    listing = hashlib.sha256()
    budget = _ByteBudget(max_bytes)
    with atomic_dir(out_dir) as tmp:
        for path in entries:
            relative = path.relative_to(folder).as_posix()
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as reader:
                digest = budget.copy(reader, target, relative)
            listing.update(f"{relative}\0{digest}\n".encode())
    log.info("copied %d files (%s bytes) into %s", len(entries), f"{budget.written:,}", out_dir)
    return listing.hexdigest(), budget.written


def unpack(archive: Path, out_dir: Path, *, max_files: int, max_bytes: int,
           source: str | None = None) -> str:
    """Extract a zip or a tar, told apart by content, not name, into `out_dir`; return
    'zip' or 'tar'. Anything else is refused, naming `source` (where it came from)."""
    if zipfile.is_zipfile(archive):
        extract(archive, out_dir, max_files=max_files, max_bytes=max_bytes)
        return "zip"
    try:
        is_tar = tarfile.is_tarfile(archive)
    except (OSError, EOFError):
        is_tar = False
    if not is_tar:
        raise UnsafeArchiveError(
            f"'{source or archive}' is not a zip or tar archive (truncated, or another "
            "format, e.g. a web page); check the source")
    extract_tar(archive, out_dir, max_files=max_files, max_bytes=max_bytes)
    return "tar"


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
                local = _local_path(mirror)
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
