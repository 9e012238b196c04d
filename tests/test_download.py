"""download: sources, retries, checksums and refusing dangerous archives."""

from __future__ import annotations

import hashlib
import http.server
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from catsdogs.data.download import DownloadError, UnsafeArchiveError, download, extract, fetch

CAPS = {"max_files": 1000, "max_bytes": 10_000_000}
NO_WAIT = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.0, "sleep": lambda s: None}


def run_download(source: str, out: Path, sha256: str | None = None, **caps: int) -> object:
    return download([source], out, sha256=sha256, **NO_WAIT, **{**CAPS, **caps})


class _Server:
    """A real HTTP server on 127.0.0.1 answering from a scripted list of status codes."""

    def __init__(self, body: bytes, statuses: list[int]) -> None:
        self.body, self.statuses, self.requests = body, list(statuses), 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests += 1
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                payload = server.body if status == 200 else b"nope"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.zip"


@pytest.fixture()
def serve(dataset_zip: Path) -> Iterator:
    servers = []

    def start(statuses: list[int]) -> _Server:
        server = _Server(dataset_zip.read_bytes(), statuses)
        threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_path_and_file_url_extract_the_tree(dataset_zip: Path, tmp_path: Path) -> None:
    for source, out in ((str(dataset_zip), tmp_path / "a"), (dataset_zip.as_uri(), tmp_path / "b")):
        fetched = run_download(source, out, sha256=sha256_of(dataset_zip))
        assert fetched.sha256 == sha256_of(dataset_zip)
        assert fetched.size == dataset_zip.stat().st_size
        cats = sorted((out / "cats_and_dogs_filtered/train/cats").iterdir())
        assert len(cats) == 12 and cats[0].name == "cat.0.jpg"


def test_wrong_sha256_is_refused_and_leaves_nothing(dataset_zip: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="sha256 mismatch.*expected 0000"):
        run_download(str(dataset_zip), out, sha256="0" * 64)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("content", [b"this is not a zip", None], ids=["text", "truncated"])
def test_non_zip_and_truncated_zip_are_refused(
    dataset_zip: Path, tmp_path: Path, content: bytes | None
) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(content if content is not None else dataset_zip.read_bytes()[:5000])
    out = tmp_path / "raw"
    with pytest.raises(UnsafeArchiveError, match="not a zip archive"):
        run_download(str(bad), out)
    assert not out.exists()


def test_http_500_is_retried_then_succeeds(serve, tmp_path: Path) -> None:
    server = serve([500, 503])
    fetched = run_download(server.url, tmp_path / "raw")
    assert server.requests == 3
    assert fetched.source == server.url
    assert (tmp_path / "raw/cats_and_dogs_filtered/validation/dogs/dog.2000.jpg").is_file()


def test_http_404_is_not_retried_and_names_the_url(serve, tmp_path: Path) -> None:
    server = serve([404])
    with pytest.raises(DownloadError, match="HTTP 404") as error:
        run_download(server.url, tmp_path / "raw")
    assert server.requests == 1
    assert server.url in str(error.value) and "download.url" in str(error.value)
    assert not (tmp_path / "raw").exists()


def test_a_failing_source_falls_through_to_the_next(serve, dataset_zip: Path, tmp_path: Path) -> None:
    server = serve([404])
    fetched = fetch([server.url, str(dataset_zip)], tmp_path / "a.zip", **NO_WAIT)
    assert fetched.source == str(dataset_zip)


def test_connection_refused_is_retried_and_explained(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/cats_and_dogs_filtered.zip"
    with pytest.raises(DownloadError) as error:
        run_download(url, tmp_path / "raw")
    message = str(error.value)
    assert url in message and "after 3 attempts" in message
    assert "local copy" in message and "download.url" in message


def _zip_with(path: Path, name: str, data: bytes = b"x", symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cats_and_dogs_filtered/train/cats/cat.0.jpg", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("name", "symlink", "message"),
    [
        ("../evil.txt", False, "climbs out"),
        ("a/../../evil.txt", False, "climbs out"),
        ("/etc/evil.txt", False, "absolute path"),
        ("cats_and_dogs_filtered/link", True, "symbolic link"),
    ],
)
def test_dangerous_entries_are_refused_by_name(
    tmp_path: Path, name: str, symlink: bool, message: str
) -> None:
    archive = _zip_with(tmp_path / "evil.zip", name, b"/etc/passwd", symlink)
    out = tmp_path / "raw"
    with pytest.raises(UnsafeArchiveError, match=message) as error:
        extract(archive, out, **CAPS)
    assert name in str(error.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_archive_over_the_byte_cap_is_refused(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "big.zip", "big.bin", b"\0" * 200_000)
    with pytest.raises(UnsafeArchiveError, match="'big.bin'.*over the cap of 100,000 bytes"):
        extract(archive, tmp_path / "raw", max_files=10, max_bytes=100_000)
    assert not (tmp_path / "raw").exists()


def test_archive_over_the_file_cap_is_refused(dataset_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchiveError, match="44 files, over the cap of 10"):
        extract(dataset_zip, tmp_path / "raw", max_files=10, max_bytes=10**9)
    assert not (tmp_path / "raw").exists()
