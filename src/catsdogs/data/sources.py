"""The `download` params section and its sources: what they name, and how they are shown.

A source is an https/http URL, a file:// URL or a local path, of a zip, a tar (.tar, .tar.gz,
.tgz, .tar.bz2, .tar.xz) or a folder; a list of them is mirrors of one source, tried in order.
Several named sources combine into one collection, each unpacked into a folder of its name.
`DownloadConfig` checks the section (names, digests, caps); `local_path` tells a local source
from a remote one; `shown` and `recorded_source` are a source as logs, messages and the
committed record may show it, without credentials or this machine's folders. Reads and writes
nothing.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from catsdogs.core.errors import UserError
from catsdogs.core.params import Range


class DownloadError(UserError):
    """No source could be fetched, or what was fetched is not what params promise."""


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
    # README's 100,000 photos). Bombs are refused by what they are: see archives.MAX_RATIO.
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
    local = local_path(source)
    if local is not None:
        return local.name or str(local)  # a root folder ("/") has no name
    return shown(source)


def local_path(source: str) -> Path | None:
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
