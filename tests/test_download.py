"""download: sources, retries, checksums and refusing dangerous archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from catsdogs.core.params import from_mapping
from catsdogs.data.archives import UnsafeArchiveError, extract
from catsdogs.data.download import download, download_all
from catsdogs.data.fetch import fetch
from catsdogs.data.sources import DownloadConfig, DownloadError, recorded_source

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
            def do_GET(self) -> None:
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
        # The committed record names the file, not the folders of the machine it was on.
        record = fetched.record()
        assert (record["source"], record["local"]) == (dataset_zip.name, True)
        assert str(dataset_zip.parent) not in str(record)


@pytest.mark.parametrize(("source", "recorded"), [
    ("https://example.com/data/cats.zip", "https://example.com/data/cats.zip"),
    ("https://user:secret@example.com:8443/cats.zip?v=2", "https://example.com:8443/cats.zip?v=***"),
    ("http://me@[::1]:8000/cats.zip", "http://[::1]:8000/cats.zip"),
    ("file:///home/someone/My%20Photos/pets.tar.gz", "pets.tar.gz"),
    ("~/Pictures/pets/", "pets"),
])
def test_the_record_keeps_no_local_folders_or_credentials(source: str, recorded: str) -> None:
    assert recorded_source(source) == recorded


def test_wrong_sha256_is_refused_and_leaves_nothing(dataset_zip: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match=r"sha256 mismatch.*expected 0000"):
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
    with pytest.raises(UnsafeArchiveError, match="not a zip or tar archive"):
        run_download(str(bad), out)
    assert not out.exists()


def test_http_500_is_retried_then_succeeds(serve, tmp_path: Path) -> None:
    server = serve([500, 503])
    fetched = run_download(server.url, tmp_path / "raw")
    assert server.requests == 3
    assert fetched.source == server.url
    assert (fetched.record()["source"], fetched.record()["local"]) == (server.url, False)
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
    # Refused from the sizes its headers declare, before a byte is written.
    with pytest.raises(UnsafeArchiveError, match=r"big.zip' declares 200,[0-9]{3} bytes uncompressed, "
                                                 r"over the cap of 100,000 bytes"):
        extract(archive, tmp_path / "raw", max_files=10, max_bytes=100_000)
    assert not (tmp_path / "raw").exists()


def test_archive_over_the_file_cap_is_refused(dataset_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchiveError, match="44 files, over the cap of 10"):
        extract(dataset_zip, tmp_path / "raw", max_files=10, max_bytes=10**9)
    assert not (tmp_path / "raw").exists()


# ---- Sources of other kinds, and several combined ----------------------------------------


def _tar_of(zip_path: Path, tar_path: Path, mode: str = "w:gz") -> Path:
    """The same tree as a zip, as a tar (gzip-compressed by default)."""
    with zipfile.ZipFile(zip_path) as zf, tarfile.open(tar_path, mode) as tf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            data = zf.read(info)
            entry = tarfile.TarInfo(info.filename)
            entry.size = len(data)
            tf.addfile(entry, io.BytesIO(data))
    return tar_path


@pytest.mark.parametrize("mode", ["w:gz", "w"], ids=["tar.gz", "tar"])
def test_a_tar_source_is_read_by_its_content(dataset_zip: Path, tmp_path: Path, mode: str) -> None:
    archive = _tar_of(dataset_zip, tmp_path / "photos.bin", mode)  # the name says nothing
    fetched = run_download(str(archive), tmp_path / "raw")
    assert fetched.kind == "tar" and fetched.sha256 == sha256_of(archive)
    cats = sorted((tmp_path / "raw/cats_and_dogs_filtered/train/cats").iterdir())
    assert len(cats) == 12 and cats[0].read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [("../evil.jpg", tarfile.REGTYPE, "climbs out"), ("/tmp/evil.jpg", tarfile.REGTYPE, "absolute"),
     ("photos/link.jpg", tarfile.SYMTYPE, "is a link"), ("photos/hard.jpg", tarfile.LNKTYPE, "is a link"),
     ("photos/fifo", tarfile.FIFOTYPE, "device or fifo")],
)
def test_dangerous_tar_entries_are_refused_by_name(tmp_path: Path, name: str, kind: bytes,
                                                   message: str) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        entry = tarfile.TarInfo(name)
        entry.type = kind
        entry.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        tf.addfile(entry, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    with pytest.raises(UnsafeArchiveError, match=message) as error:
        run_download(str(archive), tmp_path / "raw")
    assert name.lstrip("/") in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar"]


def test_a_tar_over_the_file_cap_is_refused(dataset_zip: Path, tmp_path: Path) -> None:
    archive = _tar_of(dataset_zip, tmp_path / "photos.tar.gz")
    with pytest.raises(UnsafeArchiveError, match="44 files, over the cap of 10"):
        run_download(str(archive), tmp_path / "raw", max_files=10)
    assert not (tmp_path / "raw").exists()


def test_a_folder_source_is_copied_and_its_listing_hashed(extracted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    shutil.copytree(extracted, folder)
    first = run_download(str(folder), tmp_path / "raw")
    assert first.kind == "folder" and len(first.sha256) == 64
    assert first.size == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert (tmp_path / "raw/cats_and_dogs_filtered/validation/dogs/dog.2000.jpg").is_file()
    assert run_download(folder.as_uri(), tmp_path / "again").sha256 == first.sha256
    (folder / "cats_and_dogs_filtered/train/cats/cat.0.jpg").rename(
        folder / "cats_and_dogs_filtered/train/cats/cat.0b.jpg")  # same bytes, new name
    renamed = run_download(str(folder), tmp_path / "raw")
    assert renamed.sha256 != first.sha256
    with pytest.raises(DownloadError, match=r"sha256 mismatch.*download.sha256"):
        run_download(str(folder), tmp_path / "raw", sha256=first.sha256)
    assert (tmp_path / "raw/cats_and_dogs_filtered/train/cats/cat.0b.jpg").is_file()  # kept


def test_a_folder_with_a_symlink_is_refused_by_name(extracted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    shutil.copytree(extracted, folder)
    (folder / "cats_and_dogs_filtered/train/cats/evil.jpg").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=r"evil.jpg' is a symbolic link"):
        run_download(str(folder), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_missing_local_source_names_it(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"local file or folder '.*nowhere' does not exist"):
        run_download(str(tmp_path / "nowhere"), tmp_path / "raw")


def _config(**settings: object) -> DownloadConfig:
    return from_mapping(DownloadConfig, settings, "download")


def test_several_named_sources_land_in_their_own_folders(dataset_zip: Path, extracted: Path,
                                                         tmp_path: Path) -> None:
    tar = _tar_of(dataset_zip, tmp_path / "b.tgz")
    config = _config(url={"tutorial": ["http://127.0.0.1:9/gone.zip", str(dataset_zip)],
                          "more": str(tar), "mine": str(extracted)},
                     sha256={"tutorial": sha256_of(dataset_zip)})
    out = tmp_path / "raw"
    fetched = download_all(config.sources, out, **NO_WAIT, **CAPS)
    assert [(f.name, f.kind, f.source) for f in fetched] == [
        ("tutorial", "zip", str(dataset_zip)), ("more", "tar", str(tar)), ("mine", "folder", str(extracted))]
    assert sorted(p.name for p in out.iterdir()) == ["mine", "more", "tutorial"]
    for name in ("mine", "more", "tutorial"):
        assert len(list((out / name).rglob("*.jpg"))) == 44
    assert fetched[0].record() == {"name": "tutorial", "folder": "tutorial", "source": dataset_zip.name,
                                   "local": True, "kind": "zip", "sha256": sha256_of(dataset_zip),
                                   "size_bytes": dataset_zip.stat().st_size}
    assert fetched[2].record()["source"] == extracted.name  # a folder, by its name


def test_one_failing_source_of_several_leaves_nothing(dataset_zip: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "old.txt").write_text("the previous download")
    config = _config(url={"good": str(dataset_zip), "bad": str(tmp_path / "missing.zip")})
    with pytest.raises(DownloadError, match=r"missing.zip"):
        download_all(config.sources, out, **NO_WAIT, **CAPS)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"url": {"../up": "a.zip"}}, "source name '../up' in download.url cannot be a folder name"),
     ({"url": {}}, "empty mapping"),
     ({"url": {"a": "a.zip"}, "sha256": {"b": "00"}}, r"download.sha256 names \['b'\].*sources: a"),
     ({"url": "a.zip", "sha256": {"a": "00"}}, "sha256 is a mapping but download.url is one source"),
     ({"url": {"a": "a.zip"}, "sha256": "00"}, r"give download.sha256 as \{name: sha256\}")],
)
def test_bad_source_settings_are_refused_with_the_setting(settings: dict, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        _ = _config(**settings).sources


def test_a_folder_source_overlapping_the_download_folder_is_refused(extracted: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "data/raw"
    shutil.copytree(extracted, out / "mine")
    for folder in (out / "mine", tmp_path / "data"):
        with pytest.raises(DownloadError, match="overlaps the download folder"):
            run_download(str(folder), out)
    assert (out / "mine/cats_and_dogs_filtered/train/cats/cat.0.jpg").is_file()  # untouched
    # A named source too: its own folder is a temporary one, the overlap is with out_dir.
    config = _config(url={"tutorial": str(extracted), "mine": str(out / "mine")})
    with pytest.raises(DownloadError, match="overlaps the download folder"):
        download_all(config.sources, out, **NO_WAIT, **CAPS)
    assert (out / "mine/cats_and_dogs_filtered/train/cats/cat.0.jpg").is_file()


def test_a_pinned_sha256_is_checked_before_the_format(tmp_path: Path) -> None:
    page = tmp_path / "portal.zip"
    page.write_text("<html>please log in</html>")
    with pytest.raises(DownloadError, match=r"sha256 mismatch for .*portal.zip"):
        run_download(str(page), tmp_path / "raw", sha256="0" * 64)
    with pytest.raises(UnsafeArchiveError, match=r"portal.zip' is not a zip or tar archive"):
        run_download(str(page), tmp_path / "raw")


@pytest.mark.parametrize("first_is_file", [True, False], ids=["file-then-folder", "folder-then-file"])
def test_entries_that_clash_are_refused_by_name(tmp_path: Path, first_is_file: bool) -> None:
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        if first_is_file:
            zf.writestr("photos/cats", b"a file")
            zf.writestr("photos/cats/a.jpg", b"x")
        else:
            zf.writestr("photos/cats/", b"")
            zf.writestr("photos/cats", b"a file")
    with pytest.raises(UnsafeArchiveError, match="clashes with another entry"):
        extract(archive, tmp_path / "raw", **CAPS)
    assert not (tmp_path / "raw").exists()


def test_windows_separators_in_a_zip_make_folders(tmp_path: Path) -> None:
    archive = tmp_path / "win.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos\\cats\\a.jpg", b"x")
    extract(archive, tmp_path / "raw", **CAPS)
    assert (tmp_path / "raw/photos/cats/a.jpg").read_bytes() == b"x"


def test_the_readme_override_for_several_sources_works_in_dvc(tmp_path: Path) -> None:
    """`dvc exp run -S` cannot merge a mapping into the default list of mirrors; the README's
    two-step override (drop, then add) must give DownloadConfig its named sources."""
    import yaml
    from conftest import PROJECT_ROOT
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params)
    apply_overrides(params, ["~download.url",
                             "+download.url={tutorial:'/p/cats_and_dogs_filtered.zip',mine:'/p/pets'}"])
    section = yaml.safe_load(params.read_text())["download"]
    sources = _config(**section).sources
    assert [(s.name, s.mirrors) for s in sources] == [
        ("tutorial", ("/p/cats_and_dogs_filtered.zip",)), ("mine", ("/p/pets",))]


# ---- Archives Python cannot read, and bombs judged by what they claim --------------------


def _zip_entry_patched(path: Path, name: str, data: bytes, *, flag_bits: int = 0,
                       method: int | None = None) -> Path:
    """A zip of one stored entry, its header then set to say it is encrypted (flag bit 0) or
    compressed with another method (what `zip -P` or Windows Explorer write)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(name, data)
    raw = bytearray(path.read_bytes())
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = raw.find(signature)
        raw[at + flags_at:at + flags_at + 2] = flag_bits.to_bytes(2, "little")
        if method is not None:
            raw[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(("flag_bits", "method", "message"), [
    (0x1, None, "is encrypted \\(a password-protected zip\\)"),
    (0, 9, "is compressed with Deflate64"),
])
def test_zips_python_cannot_read_are_refused_with_the_fix(tmp_path: Path, flag_bits: int,
                                                          method: int | None, message: str) -> None:
    archive = _zip_entry_patched(tmp_path / "photos.zip", "cats/cat.1.jpg", b"\xff\xd8 photo",
                                 flag_bits=flag_bits, method=method)
    with pytest.raises(UnsafeArchiveError, match=message) as error:
        run_download(str(archive), tmp_path / "raw")
    assert "'cats/cat.1.jpg'" in str(error.value) and "unpack it yourself" in str(error.value)
    assert not (tmp_path / "raw").exists()
    # `catsdogs evaluate x.zip` reads a collection through the same unpacking.
    from catsdogs.inference.evaluate_collection import unpacked

    caps = from_mapping(DownloadConfig, {"url": "x"}, "download")
    with pytest.raises(UnsafeArchiveError, match=message), unpacked(archive, caps):
        pass


def test_the_default_caps_let_a_100000_photo_collection_through() -> None:
    config = from_mapping(DownloadConfig, {"url": "x.zip"}, "download")
    assert config.max_files >= 100_000 and config.max_bytes >= 100_000 * 200_000


def test_a_zip_bomb_is_refused_by_its_ratio_under_any_cap(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/cat.1.jpg", b"\0" * 20_000_000)  # 20 MB from about 20 KB
    with pytest.raises(UnsafeArchiveError, match="over 100 times: a decompression bomb"):
        extract(archive, tmp_path / "raw", max_files=10**6, max_bytes=10**11)
    assert not (tmp_path / "raw").exists()


def test_a_tar_bomb_is_refused_by_its_ratio(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    data = b"\0" * 20_000_000
    with tarfile.open(archive, "w:gz") as tf:
        entry = tarfile.TarInfo("cats/cat.1.jpg")
        entry.size = len(data)
        tf.addfile(entry, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="100 times its compressed size"):
        run_download(str(archive), tmp_path / "raw", max_files=10**6, max_bytes=10**11)
    assert not (tmp_path / "raw").exists()


def test_photos_that_barely_compress_pass_the_ratio(dataset_zip: Path, tmp_path: Path) -> None:
    archive = _tar_of(dataset_zip, tmp_path / "photos.tar.gz")
    assert run_download(str(archive), tmp_path / "raw", max_files=10**6, max_bytes=10**11)


# ---- Credentials: given outside params.yaml, never shown -------------------------------

SECRET = "s3cr3t-Pa55"


@pytest.fixture()
def guarded(dataset_zip: Path) -> Iterator[str]:
    """A server that answers the zip only to Basic user:SECRET or ?token=SECRET, else 401."""
    import base64

    body = dataset_zip.read_bytes()
    basic = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            allowed = self.headers.get("Authorization") == basic or f"token={SECRET}" in self.path
            payload = body if allowed else b"who are you?"
            self.send_response(200 if allowed else 401)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_credentials_come_from_netrc_and_are_never_shown(guarded: str, tmp_path: Path,
                                                         monkeypatch, caplog) -> None:
    url = f"http://{guarded}/cats_and_dogs_filtered.zip"
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    with pytest.raises(DownloadError, match="HTTP 401"):  # no credentials: refused
        run_download(url, tmp_path / "raw")
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine 127.0.0.1 login user password {SECRET}\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    caplog.set_level("DEBUG")
    fetched = run_download(url, tmp_path / "raw")
    assert fetched.sha256 and SECRET not in json.dumps(fetched.record())
    assert SECRET not in caplog.text


@pytest.mark.parametrize("how", ["user-in-url", "token-in-query"])
def test_a_secret_in_the_url_works_and_is_never_shown(guarded: str, tmp_path: Path, monkeypatch,
                                                      caplog, tracking_store: str, how: str) -> None:
    from click.testing import CliRunner
    from conftest import load_stage, small_params, write_params
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    url = (f"http://user:{SECRET}@{guarded}/data.zip" if how == "user-in-url"
           else f"http://{guarded}/data.zip?token={SECRET}")
    params = small_params(tmp_path / "unused.zip")
    params["download"]["url"] = url
    write_params(tmp_path / "params.yaml", params)
    caplog.set_level("DEBUG")
    result = CliRunner().invoke(load_stage("download"), [
        "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw"),
        "--record", str(tmp_path / "download.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw/cats_and_dogs_filtered/train/cats").is_dir()
    record = (tmp_path / "download.json").read_text()
    run = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("catsdogs").experiment_id],
        filter_string="attributes.run_name = 'download'")[0]
    for where, text in (("record", record), ("output", result.output), ("log", caplog.text),
                        ("MLflow params", json.dumps(run.data.params))):
        assert SECRET not in text, where
    assert f"{guarded}/data.zip" in record
