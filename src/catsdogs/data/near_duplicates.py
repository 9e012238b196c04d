"""Near-identical photos: a perceptual hash per photo, and the groups they form.

Pure NumPy and Pillow. A photo's perceptual hash is a 64-bit difference hash of a small grey
thumbnail: each bit says whether a pixel is brighter than its right neighbour. Re-encoding,
resizing and small edits leave it within a few bits, where unrelated photos differ in about
half of them. Photos whose hashes differ in at most `max_bits` bits, or whose bytes are
identical, are joined into groups (transitively): the split stage keeps a group in one split
and excludes a group whose photos carry different labels.
"""

from __future__ import annotations

import itertools

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
    """Index pairs (i < j) of hashes that differ in at most `max_bits` bits, sorted.

    Comparing every hash with every other grows with the square of the photos (at 100,000,
    five billion comparisons). Instead each hash is cut into max_bits + 1 blocks: two hashes
    within max_bits differ in at most max_bits blocks, so they agree exactly on at least one
    (the pigeonhole principle). Only hashes that share a block's value are compared, which
    for photos is a small fraction of all pairs; the result is the same.
    """
    if not hashes:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    if max_bits >= 63:  # blocks of one bit or none: every pair is a candidate
        return _pairs_within(values, np.arange(len(values)), max_bits)
    blocks = max_bits + 1
    edges = np.linspace(0, 64, blocks + 1).astype(int)
    found: set[tuple[int, int]] = set()
    for low, high in itertools.pairwise(edges):
        mask = np.uint64((1 << int(high - low)) - 1)
        keys = (values >> np.uint64(low)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            if end - start > 1:
                found.update(_pairs_within(values, order[start:end], max_bits))
    return sorted(found)


def _pairs_within(values: np.ndarray, members: np.ndarray, max_bits: int) -> list[tuple[int, int]]:
    """Pairs (i < j) among the indices `members` whose hashes differ in at most max_bits."""
    members = np.sort(members)
    subset = values[members]
    rows = max(1, _CHUNK_ELEMENTS // len(subset))
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(subset), rows):
        block = subset[start:start + rows]
        distance = np.bitwise_count(block[:, None] ^ subset[None, :])
        i, j = np.nonzero(distance <= max_bits)
        i = i + start
        keep = i < j
        pairs += zip(members[i[keep]].tolist(), members[j[keep]].tolist(), strict=True)
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
