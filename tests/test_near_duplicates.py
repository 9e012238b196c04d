"""The near-duplicate search finds exactly the pairs an all-against-all comparison finds."""

from __future__ import annotations

import numpy as np
import pytest

from catsdogs.data.near_duplicates import groups, near_pairs


def brute_force(hashes: list[str], max_bits: int) -> list[tuple[int, int]]:
    values = [int(h, 16) for h in hashes]
    return [(i, j) for i in range(len(values)) for j in range(i + 1, len(values))
            if bin(values[i] ^ values[j]).count("1") <= max_bits]


@pytest.mark.parametrize("max_bits", [0, 1, 3, 6, 12])
def test_block_search_equals_all_against_all(max_bits: int) -> None:
    rng = np.random.default_rng(max_bits)
    values = [int(v) for v in rng.integers(0, 2**63, 400, dtype=np.uint64)]
    # Plant near copies at every distance up to max_bits + 2, flipping bits anywhere, and a
    # crowd sharing one block value (as flat photos do) to exercise a big bucket.
    for distance in range(max_bits + 3):
        for _ in range(5):
            base = values[int(rng.integers(len(values)))]
            flips = rng.choice(64, size=distance, replace=False)
            values.append(base ^ sum(1 << int(b) for b in flips))
    values += [0xFFFF << 48 | int(v) for v in rng.integers(0, 2**20, 50)]
    hashes = [f"{v:016x}" for v in values]
    assert near_pairs(hashes, max_bits) == brute_force(hashes, max_bits)


def test_groups_join_pairs_transitively() -> None:
    hashes = ["0000000000000000", "0000000000000001", "0000000000000003", "ffffffffffffffff"]
    assert near_pairs(hashes, 1) == [(0, 1), (1, 2)]
    assert groups(4, near_pairs(hashes, 1)) == [0, 0, 0, 3]
    assert near_pairs([], 3) == []
