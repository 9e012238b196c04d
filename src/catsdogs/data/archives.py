"""Unpack a zip, a tar or a folder safely into a folder.

Reads an archive file (a zip or a tar, told apart by content, not name) or a local folder, and
writes its files into the output folder atomically (nothing is left there on failure). Refused
by name: entries that would write outside the folder, links, devices and fifos, encrypted zips
and compression methods Python cannot read, decompression bombs, and more files or bytes than
the caps (download.max_files, download.max_bytes) allow. Used by the download stage and by
`evaluate` on a collection.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from catsdogs.core.atomic import atomic_dir
from catsdogs.core.errors import UserError
from catsdogs.data.fetch import CHUNK_BYTES
from catsdogs.data.layouts import is_hidden

log = logging.getLogger(__name__)

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


class UnsafeArchiveError(UserError, ValueError):
    """Not a zip, tar or folder, or an entry would escape, link out or exceed a cap."""


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
