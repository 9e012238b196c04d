"""Reading an image file into pixels: the one decode the split checks, training, evaluation,
the figures and `catsdogs predict` all share, so each of them sees identical pixels.

Reads a file's bytes; returns a (size, size, 3) uint8 RGB array. The header is read first,
before any pixel is decoded: the format must be one of `FORMATS` and the pixel count within a
limit, so a small file that claims to be 20,000 x 20,000 pixels (a decompression bomb) is
refused instead of taking gigabytes. The EXIF orientation a phone writes is applied, so a
photo stored sideways is seen upright, as a photo viewer shows it. A file that cannot be read
raises ImageRefused, worded the same way everywhere: which file, why, what to do.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from catsdogs.core.errors import UserError

# Pillow's own threshold for "possibly a decompression bomb" (about 89.5 megapixels, a
# quarter of a GiB as RGB): far above any phone photo, far below what takes a machine down.
DEFAULT_MAX_PIXELS = 89_478_485
# Pillow's names of the formats read here (MPO: the multi-picture JPEG some cameras write;
# HEIF: iPhone photos, through the pillow-heif plugin).
FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF", "HEIF", "AVIF"})
# File name endings taken for images when a folder is searched.
SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                      ".heic", ".heif", ".avif"})
SUPPORTED = "JPEG, PNG, GIF, BMP, WebP, TIFF, HEIC or AVIF"


class ImageRefused(UserError):
    """A file that is not read as an image: which file, why, and what to do."""

    def __init__(self, path: Path | str, kind: str, reason: str, remedy: str) -> None:
        super().__init__(f"{path}: {reason}; {remedy}")
        self.path, self.kind, self.reason, self.remedy = str(path), kind, reason, remedy

    def __reduce__(self) -> tuple:  # rebuilt from its parts when it crosses processes
        return type(self), (self.path, self.kind, self.reason, self.remedy)


@functools.cache
def _prepare_pillow() -> None:
    """Once, when the first image is read: teach Pillow HEIC/HEIF (iPhone photos), and leave
    the pixel limit to read_image, which checks every file against a setting and words the
    refusal like any other (Pillow's own guard is a process-wide constant)."""
    Image.MAX_IMAGE_PIXELS = None
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # without the plugin, HEIC files are refused as unreadable, by name
        return
    register_heif_opener()


def read_file_bytes(path: Path | str) -> bytes:
    """The bytes of an image file; a file that cannot be read (permissions, I/O) is refused."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ImageRefused(path, "unreadable", f"cannot be read ({error.strerror or error})",
                           "check that it is a file you may read, or remove it") from None


def read_image(
    path: Path | str,
    size: int,
    *,
    max_pixels: int | None,
    data: bytes | None = None,
    limit_setting: str = "split.max_pixels",
) -> np.ndarray:
    """Decode one image file to a (size, size, 3) uint8 RGB array, upright and resized.

    `data` are the file's bytes when the caller has read them already (the split stage hashes
    them). `max_pixels` None skips the pixel limit, for files already checked (listed in a
    split manifest). `limit_setting` names the setting that raises the limit, for the
    message. JPEGs are decoded at the smallest scale that is still at least `size`, which
    saves time and memory; resizing is bilinear. Raises ImageRefused.
    """
    _prepare_pillow()
    data = read_file_bytes(path) if data is None else data
    if not data:
        raise ImageRefused(path, "empty file", "empty file",
                           "remove it or replace it with the real photo")
    try:
        image = Image.open(io.BytesIO(data))  # the header only: no pixel decoded yet
    except UnidentifiedImageError:  # its message holds a memory address: not repeatable
        raise ImageRefused(path, "unreadable", "not a decodable image (no image format "
                           "recognised)", f"use {SUPPORTED}, or remove it") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRefused(path, "unreadable", f"not a decodable image ({_reason(error)})",
                           f"use {SUPPORTED}, or remove it") from None
    with image:
        if image.format not in FORMATS:
            raise ImageRefused(path, "unsupported format",
                               f"unsupported image format {image.format}",
                               f"convert it to {SUPPORTED}")
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageRefused(
                path, "too many pixels",
                f"{width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,}",
                f"shrink the image, or raise {limit_setting} if you trust it",
            )
        try:
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale
            image.load()  # every pixel: truncation and corruption show here
            upright = ImageOps.exif_transpose(image)
            rgb = upright.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageRefused(path, "damaged", f"damaged or truncated image ({_reason(error)})",
                               "replace it with an intact copy, or remove it") from None
    return np.asarray(rgb, dtype=np.uint8)


def read_images(
    paths: Sequence[Path | str], size: int, *, max_pixels: int | None, workers: int | None = None
) -> np.ndarray:
    """Decode many files into one (n, size, size, 3) uint8 array, in order, on a thread pool.

    Pillow decodes and resizes without holding the GIL, so threads use every core.
    Raises ImageRefused for the first file that cannot be read.
    """
    batch = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def decode(index: int) -> None:
        batch[index] = read_image(paths[index], size, max_pixels=max_pixels)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(paths))):
            pass
    return batch


def decode_into_file(target: Path | str, size: int,
                     chunk: tuple[int, Sequence[Path | str]]) -> int:
    """Decode a chunk (first_index, paths) into the record file `target`, photo i at record
    first_index + i (a record is size * size * 3 bytes); return how many were written. Each
    call opens the file itself, so worker processes can fill one file side by side. Raises
    ImageRefused."""
    first_index, paths = chunk
    record = size * size * 3
    fd = os.open(target, os.O_WRONLY)
    try:
        for offset, path in enumerate(paths, start=first_index):
            pixels = read_image(path, size, max_pixels=None)
            os.pwrite(fd, pixels.tobytes(), offset * record)
    finally:
        os.close(fd)
    return len(paths)


def _reason(error: BaseException) -> str:
    """An exception as a short phrase: its message, else its class name."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__
