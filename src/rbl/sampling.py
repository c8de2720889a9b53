"""Batch samplers: index batches over the training examples, one epoch at a time.

`balanced` is the paper's RbL sampler generalised to any depth: from the root, two children are
drawn at every level down to two leaves under each, and `batch_size / 2**L` clips from each leaf,
so every batch holds pairs of every rank (with L = 2 and batch 12: 2 coarse x 2 fine x 3 clips).
Clips with incomplete labels form an "unknown" child of their deepest known node, so a clip
labelled only at a coarse level is drawn too and trains the coarse structure.
`random` draws uniformly random batches (the paper's RbL_unc).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLERS = ("balanced", "random")


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of uniformly shuffled batches; a last batch of one clip (no pairs) is dropped."""
    order = rng.permutation(n)
    batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
    return [b for b in batches if len(b) > 1]


class BalancedBatches:
    """Rank-balanced batches over labelled examples (labels (N, L), -1 unknown)."""

    def __init__(self, labels: np.ndarray, batch_size: int) -> None:
        self.depth = labels.shape[1]
        # -1 codes make the unknown child: (c0, -1) is a child of (c0,) beside (c0, c1).
        self.pool = np.arange(len(labels))
        self.per_leaf = max(2, batch_size // 2 ** self.depth)
        self.n_batches = max(1, math.ceil(len(labels) / batch_size))
        keys = [tuple(row) for row in labels[self.pool]]
        self.children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        self.members: dict[tuple[int, ...], list[int]] = {}
        for index, key in zip(self.pool, keys):
            for level in range(self.depth):
                parent, child = key[:level], key[:level + 1]
                siblings = self.children.setdefault(parent, [])
                if child not in siblings:
                    siblings.append(child)
            self.members.setdefault(key, []).append(int(index))
        for siblings in self.children.values():
            siblings.sort()
        if not self.pool.size:
            raise ValueError("balanced batches need training examples")

    def _draw(self, node: tuple[int, ...], rng: np.random.Generator) -> list[int]:
        if len(node) == self.depth:
            members = self.members[node]
            replace = len(members) < self.per_leaf
            return list(rng.choice(members, size=self.per_leaf, replace=replace))
        children = self.children[node]
        picks = rng.choice(len(children), size=min(2, len(children)), replace=False)
        return [i for k in sorted(picks) for i in self._draw(children[k], rng)]

    def epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [np.asarray(self._draw((), rng), dtype=np.int64) for _ in range(self.n_batches)]
