"""Reading photos from the wild: one decode for every stage, bombs, formats, EXIF rotation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catsdogs.data.images import DEFAULT_MAX_PIXELS, ImageRefused, read_image, read_images

SIZE = 32


def halves(width: int = 96, height: int = 64) -> Image.Image:
    """An image whose left half is dark and right half bright: rotation shows."""
    pixels = np.full((height, width, 3), 230, dtype=np.uint8)
    pixels[:, : width // 2] = 20
    pixels[: height // 4, :, 0] = 128  # and its top differs from its bottom
    return Image.fromarray(pixels)


def bomb_png(path: Path, side: int = 15_000) -> Path:
    """A PNG of side x side pixels of one colour: a few dozen KB on disk, 675 MB as RGB."""
    Image.new("1", (side, side), 1).save(path, format="PNG")
    return path


def sideways_jpeg(path: Path, upright: Image.Image) -> Path:
    """`upright` stored rotated, with the EXIF orientation (6) that says how to show it."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates 90 degrees clockwise: upright again
    stored.save(path, format="JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    return path


def test_exif_rotated_jpeg_reads_as_the_upright_image(tmp_path: Path) -> None:
    upright = halves()
    upright.save(tmp_path / "upright.jpg", format="JPEG", quality=100, subsampling=0)
    sideways = sideways_jpeg(tmp_path / "sideways.jpg", upright)
    a = read_image(tmp_path / "upright.jpg", SIZE, max_pixels=DEFAULT_MAX_PIXELS).astype(int)
    b = read_image(sideways, SIZE, max_pixels=DEFAULT_MAX_PIXELS).astype(int)
    assert np.abs(a - b).max() <= 3  # the same picture, up to JPEG rounding
    unrotated = np.asarray(Image.open(sideways).convert("RGB").resize((SIZE, SIZE))).astype(int)
    assert np.abs(unrotated - a).mean() > 50  # as stored, it is another picture


def test_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageRefused) as refused:
        read_image(bomb, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert refused.value.kind == "too many pixels"
    assert "15000 x 15000 = 225,000,000 pixels, over the limit of 89,478,485" in str(refused.value)
    assert str(bomb) in str(refused.value) and "split.max_pixels" in str(refused.value)


def test_pixel_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    assert read_image(path, SIZE, max_pixels=60_000).shape == (SIZE, SIZE, 3)
    with pytest.raises(ImageRefused, match=r"over the limit of 59,999.*raise --max-pixels"):
        read_image(path, SIZE, max_pixels=59_999, limit_setting="--max-pixels")


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "WEBP", "TIFF", "HEIF", "AVIF"])
def test_formats_read_like_the_jpeg(tmp_path: Path, fmt: str) -> None:
    upright = halves()
    path = tmp_path / f"photo.{fmt.lower()}"
    upright.save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = read_image(path, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image[:, : SIZE // 2 - 2].mean() < 80 and image[:, SIZE // 2 + 2 :].mean() > 170


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        (b"", "empty file", "empty file"),
        (b"just some text, not a photo", "unreadable", "not a decodable image"),
    ],
)
def test_unreadable_files_are_refused_with_why_and_what_to_do(
    tmp_path: Path, data: bytes, kind: str, reason: str
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageRefused) as refused:
        read_image(path, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert refused.value.kind == kind and reason in refused.value.reason
    assert str(refused.value).startswith(f"{path}: {reason}") and refused.value.remedy


def test_truncated_jpeg_is_damaged(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    halves(400, 300).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageRefused, match="damaged or truncated image") as refused:
        read_image(path, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert refused.value.kind == "damaged"


def test_unsupported_format_names_it(tmp_path: Path) -> None:
    path = tmp_path / "icon.jpg"
    halves(32, 32).save(path, format="ICO")
    with pytest.raises(ImageRefused, match="unsupported image format ICO; convert it to JPEG"):
        read_image(path, SIZE, max_pixels=DEFAULT_MAX_PIXELS)


def test_many_files_decode_in_order(tmp_path: Path) -> None:
    paths = []
    for shade in (10, 120, 240):
        paths.append(tmp_path / f"{shade}.png")
        Image.new("RGB", (50, 40), (shade, shade, shade)).save(paths[-1])
    batch = read_images(paths, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert batch.shape == (3, SIZE, SIZE, 3)
    assert [int(image.mean()) for image in batch] == [10, 120, 240]


def test_a_file_that_cannot_be_read_is_refused_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads any file whatever its mode, so the operating system's refusal is simulated.
    locked = tmp_path / "locked.jpg"
    halves().save(locked, format="JPEG")
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ImageRefused) as refused:
        read_image(locked, SIZE, max_pixels=DEFAULT_MAX_PIXELS)
    assert refused.value.kind == "unreadable"
    assert str(refused.value) == (f"{locked}: cannot be read (Permission denied); check that it "
                                  "is a file you may read, or remove it")
