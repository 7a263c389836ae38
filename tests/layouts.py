"""Quadruples cut from one buffer in the layouts the overlap checks of
adamax_step_many meet, and the overlap rule checked pair by pair."""

from __future__ import annotations

import numpy as np

# The layouts in memory that the overlap checks of step_many meet: each has
# its own path (runs in quadruple order, runs in sequence order, runs merged
# block by block, a comparison sort for few arrays, a radix sort for many).
# "many blocks" is tens of runs, as arrays allocated in turn with freed
# temporaries between them often are.
LAYOUTS = ("quadruples", "sequences", "blocks", "many blocks", "shuffled", "descending")


def cut(layout, lengths, rng, dtype=np.float64):
    """Quadruples of the given lengths cut from one buffer, one element apart,
    in the order of ``layout``; returns the buffer and the four lists."""
    count = len(lengths)
    slots = [(j, r) for j in range(count) for r in range(4)]
    if layout == "sequences":
        slots = [(j, r) for r in range(4) for j in range(count)]
    elif layout in ("blocks", "many blocks"):
        blocks = np.array_split(np.arange(len(slots)), 6 if layout == "blocks" else 24)
        slots = [slots[i] for b in rng.permutation(len(blocks)) for i in blocks[b]]
    elif layout == "shuffled":
        slots = [slots[i] for i in rng.permutation(len(slots))]
    elif layout == "descending":
        slots = slots[::-1]
    buffer = np.zeros(4 * int(np.sum(lengths)) + 4 * count + 1, dtype)
    lists = [[None] * count for _ in range(4)]
    position = 1
    for j, r in slots:
        lists[r][j] = buffer[position:position + lengths[j]]
        position += lengths[j] + 1
    return buffer, lists


def allowed(lists):
    """The overlap rule of step_many, pair by pair: no written array (param,
    m, u) may share a byte with any other array; gradients may share."""
    spans = [(a.__array_interface__["data"][0], a.nbytes, r != 1)
             for r, arrays in enumerate(lists) for a in arrays if a.size]
    for i, (start, size, written) in enumerate(spans):
        for other, other_size, other_written in spans[i + 1:]:
            if (written or other_written) and start < other + other_size \
                    and other < start + size:
                return False
    return True
