"""The pretrained networks the zoo's architectures start from: fetched, checked, one folder each.

params.yaml's `pretrained` section maps each architecture to `none` (it starts from random,
seeded weights) or to `{url, sha256}`: a URL, file:// URL or local path (a list: mirrors
tried in order) and the sha256 the file must have. `fetch_pretrained` writes one folder per
architecture: `WEIGHTS_FILE` for a fetched network, `NO_WEIGHTS_FILE` saying there is none.
The train stages depend on their architecture's folder (dvc.yaml: data/pretrained/${item.arch}),
so DVC hashes the weights as an input: dvc.lock records which file made the numbers, and
`dvc status` notices another one. A zoo entry loads the file by its path (its `weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.core.atomic import atomic_dir
from catsdogs.core.params import ConfigError
from catsdogs.data.fetch import fetch
from catsdogs.data.sources import DownloadError, shown

WEIGHTS_FILE = "weights.h5"
NO_WEIGHTS_FILE = "none.txt"
NO_WEIGHTS_TEXT = "No pretrained weights: models of this architecture start from random, seeded weights.\n"
OFFLINE_HINT = (
    "To use a local copy, set pretrained.<arch>.url to its path or file:// URL (the sha256 "
    "still applies), e.g. dvc exp run -S 'pretrained.transfer.url=/path/to/weights.h5'; to "
    "keep params.yaml as it is, run `python stages/pretrained.py --params <a copy of "
    "params.yaml with that url> --arch <arch> --out data/pretrained/<arch>` and then "
    "`dvc commit pretrained@<arch>`."
)


@dataclass(frozen=True)
class PretrainedSource:
    """Where an architecture's weights come from: mirrors tried in order, and their sha256."""

    arch: str
    mirrors: tuple[str, ...]
    sha256: str | None


def read_pretrained(params: Mapping[str, Any]) -> dict[str, PretrainedSource | None]:
    """The `pretrained` section: per architecture, its source, or None for `none`."""
    section = params.get("pretrained")
    if not isinstance(section, Mapping) or not section:
        raise ConfigError("params.yaml needs a 'pretrained' section: per architecture, 'none' "
                          "or {url: ..., sha256: ...}")
    sources: dict[str, PretrainedSource | None] = {}
    for arch, entry in section.items():
        if isinstance(entry, str) and entry.lower() == "none":
            sources[arch] = None
            continue
        if not isinstance(entry, Mapping) or "url" not in entry or set(entry) - {"url", "sha256"}:
            raise ConfigError(f"setting 'pretrained.{arch}' must be 'none' or {{url: ..., "
                              f"sha256: ...}}, got {entry!r}")
        url, sha256 = entry["url"], entry.get("sha256")
        mirrors = (url,) if isinstance(url, str) else tuple(url or ())
        if not mirrors or not all(isinstance(m, str) and m for m in mirrors):
            raise ConfigError(f"setting 'pretrained.{arch}.url' must be a URL or path, or a "
                              f"list of them, got {url!r}")
        if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
            raise ConfigError(f"setting 'pretrained.{arch}.sha256' must be 64 hex digits or "
                              f"null, got {sha256!r}")
        sources[arch] = PretrainedSource(arch, mirrors, sha256.lower() if sha256 else None)
    return sources


def fetch_architecture(arch: str, source: PretrainedSource | None, out_dir: Path, *,
                       timeout_s: float = 30.0, retries: int = 3) -> dict[str, Any]:
    """Write `out_dir` (replaced, all or nothing) for architecture `arch`: its weights file
    fetched and checked, or the note that it has none. Returns what was fetched (source,
    sha256, size; {} for none). A sha256 that does not match is a DownloadError naming the
    setting, and leaves `out_dir` as it was."""
    with atomic_dir(out_dir) as folder:
        if source is None:
            (folder / NO_WEIGHTS_FILE).write_text(NO_WEIGHTS_TEXT, encoding="utf-8")
            return {}
        got = fetch(source.mirrors, folder / WEIGHTS_FILE, timeout_s=timeout_s, retries=retries,
                    what=f"the weights for '{arch}'", hint=OFFLINE_HINT)
        if got.local_folder is not None:
            raise DownloadError(f"pretrained.{arch}.url '{shown(got.source)}' is a folder; "
                                "give the weights file itself")
        if source.sha256 is not None and got.sha256 != source.sha256:
            raise DownloadError(
                f"sha256 mismatch for {shown(got.source)}: expected {source.sha256}, got "
                f"{got.sha256}; this is not the file pretrained.{arch}.sha256 pins. If it "
                f"is the one you mean, set pretrained.{arch}.sha256 to the new value.")
        return {"source": shown(got.source), "sha256": got.sha256, "size_bytes": got.size}


def fetch_pretrained(
    sources: Mapping[str, PretrainedSource | None], out_dir: Path, *, timeout_s: float = 30.0,
    retries: int = 3,
) -> dict[str, dict[str, Any]]:
    """Write `out_dir`/<arch>/ for every architecture (`fetch_architecture`), all or nothing;
    return what was fetched per architecture."""
    with atomic_dir(out_dir) as built:
        return {arch: fetch_architecture(arch, source, built / arch, timeout_s=timeout_s,
                                         retries=retries)
                for arch, source in sources.items()}
