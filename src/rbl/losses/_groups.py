"""Label groups: the samples of a batch that share a label row, and the pair ranks between groups.

Pair ranks depend on labels only, and a large batch holds few distinct label rows (a 3 x 3
taxonomy gives at most 13 however large the batch). Grouping the samples reduces the rank
bookkeeping from N x N pairs to G x G groups; with the samples ordered group by group, any
per-rank table over the N x N pair matrix is a grid of constant blocks that `np.repeat` expands
without a gather. Small batches skip the grouping (every sample its own group): it would not pay.
NumPy, not torch: on arrays this small the per-call overhead dominates and NumPy's is lower.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

UNDECIDED = -1
GROUP_ABOVE = 24  # batch sizes above this group samples by label row (measured crossover)
MEMO_UP_TO = 64  # rank tables of at most this many distinct rows are memoised (the last 256)


def tree_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) tree distance // 2 between the label rows of a (N, L) and b (M, L), L + 1 if undecided.

    `rbl.taxonomy.tree_distance` halved: L - (first level where both are known and differ), 0
    when all levels are known and equal, L + 1 when an unknown level leaves it open. The first
    differing level is the highest set bit of a bit mask over the levels (read with frexp; an
    argmax over the short level axis is slow), and undecided pairs get 0.25, whose exponent -1
    wraps to L + 1.
    """
    depth = a.shape[1]
    known_a = a >= 0
    known_b = known_a if b is a else b >= 0
    differ = a[:, None, :] != b[None, :, :]
    differ &= known_a[:, None, :]
    differ &= known_b[None, :, :]
    bits = np.dot(differ.reshape(-1, depth), _level_bits(depth))
    if not (known_a.all() and known_b.all()):
        complete_a = np.logical_and.reduce(known_a, axis=1)
        complete_b = complete_a if b is a else np.logical_and.reduce(known_b, axis=1)
        bits += 0.25 * ~(complete_a[:, None] & complete_b[None, :]).reshape(-1)
    return (np.frexp(bits)[1] % (depth + 2)).reshape(len(a), len(b))


def tree_distance_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`rbl.taxonomy.tree_distance` for NumPy label rows: (N, M) ranks 0, 2, ..., 2L, or -1."""
    level = tree_levels(a, b)
    return np.where(level > a.shape[1], UNDECIDED, 2 * level)


@lru_cache(maxsize=None)
def _level_bits(depth: int) -> np.ndarray:
    """Weight of each level in the differing-levels bit mask, coarsest highest (exact below 2^52)."""
    if depth > 50:
        raise ValueError(f"at most 50 taxonomy levels, got {depth}")
    return np.exp2(np.arange(depth - 1, -1, -1))


def _group_levels(rows: np.ndarray) -> np.ndarray:
    """tree_levels(rows, rows) of distinct label rows, memoised while there are few of them: a
    training run meets the same few rows (the taxonomy's nodes) batch after batch."""
    if len(rows) > MEMO_UP_TO:
        return tree_levels(rows, rows)
    return _levels_of(rows.dtype.str, rows.shape, rows.tobytes())


@lru_cache(maxsize=256)
def _levels_of(dtype: str, shape: tuple[int, int], data: bytes) -> np.ndarray:
    rows = np.frombuffer(data, dtype=dtype).reshape(shape)
    level = tree_levels(rows, rows)
    level.flags.writeable = False
    return level


class LabelGroups(NamedTuple):
    """Samples grouped by label row.

    order: (N,) sample indices, group by group, or None for the identity (no grouping);
    sizes: (G,) samples per group, or None when every sample is its own group;
    level: (G, G) rank // 2 between groups (0 .. L), L + 1 where undecided (and on the diagonal
        when ungrouped: a sample is no pair with itself);
    pairs: (L + 2,) unordered pairs of distinct samples per level (the last: undecided).
    """

    order: np.ndarray | None
    sizes: np.ndarray | None
    level: np.ndarray
    pairs: np.ndarray

    def expand(self, table: np.ndarray) -> np.ndarray:
        """(G, G) group table -> (N, N) sample matrix, samples in `order`."""
        if self.sizes is None:
            return table
        return np.repeat(np.repeat(table, self.sizes, axis=1), self.sizes, axis=0)


def label_groups(labels: np.ndarray) -> LabelGroups:
    """Group the rows of labels (N, L), -1 unknown, and count the pairs at every rank.

    Groups hold equal rows; two groups may share a row (rows differing only in which negative
    code marks an unknown level), which costs nothing but speed.
    """
    n, depth = labels.shape
    if n <= GROUP_ABOVE:
        level = tree_levels(labels, labels)
        level.flat[:: n + 1] = depth + 1  # a sample does not pair with itself
        ordered = np.bincount(level.reshape(-1), minlength=depth + 2)
        ordered[-1] -= n
        return LabelGroups(None, None, level, ordered // 2)
    order = np.lexsort(labels.T[::-1])  # equal rows next to each other
    rows = labels[order]
    bounds = np.ones(n + 1, dtype=bool)
    np.logical_or.reduce(rows[1:] != rows[:-1], axis=1, out=bounds[1:n])
    bounds = np.flatnonzero(bounds)
    starts, sizes = bounds[:-1], bounds[1:] - bounds[:-1]
    level = _group_levels(rows[starts])
    ordered = np.multiply.outer(sizes, sizes)
    ordered.flat[:: len(sizes) + 1] -= sizes  # a sample does not pair with itself
    pairs = np.bincount(level.reshape(-1), weights=ordered.reshape(-1), minlength=depth + 2)
    return LabelGroups(order, sizes, level, pairs.astype(np.int64) // 2)
