"""Near-identical photos: a perceptual hash per photo, and the groups they form.

Pure NumPy and Pillow. A photo's perceptual hash is a 64-bit difference hash of a small grey
thumbnail: each bit says whether a pixel is brighter than its right neighbour. Re-encoding,
resizing and small edits leave it within a few bits, where unrelated photos differ in about
half of them. Photos whose hashes differ in at most `max_bits` bits, or whose bytes are
identical, are joined into groups (transitively): the split stage keeps a group in one split
and excludes a group whose photos carry different labels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Measured on the two real collections (13,000 photos): the 7 near-identical pairs inside
# dogs_vs_cats_200px differ by 0-3 bits; the closest unrelated photos by 4 or more.
DEFAULT_MAX_BITS = 3
# Rows compared at once against all hashes: bounds memory to about 8 bytes x this x photos.
_CHUNK_ELEMENTS = 20_000_000


def perceptual_hash(rgb: np.ndarray) -> str:
    """The 64-bit difference hash of an RGB uint8 image, as 16 hex digits."""
    grey = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("L")
    pixels = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return np.packbits(bits).tobytes().hex()


def near_pairs(hashes: list[str], max_bits: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) of hashes that differ in at most `max_bits` bits."""
    if not hashes:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    rows = max(1, _CHUNK_ELEMENTS // len(values))
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(values), rows):
        block = values[start:start + rows]
        distance = np.bitwise_count(block[:, None] ^ values[None, :])
        i, j = np.nonzero(distance <= max_bits)
        i = i + start
        keep = i < j
        pairs += zip(i[keep].tolist(), j[keep].tolist(), strict=True)
    return pairs


def groups(count: int, pairs: list[tuple[int, int]]) -> list[int]:
    """For `count` items joined by `pairs`, each item's group: the smallest index in it."""
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(count)]
