"""Batch samplers: index batches over the training examples, one epoch at a time.

`balanced` is the paper's RbL sampler generalised to any depth: from the root, two children are
drawn at every level down to two leaves under each, and `batch_size / 2**L` clips from each leaf,
so every batch holds pairs of every rank (with L = 2 and batch 12: 2 coarse x 2 fine x 3 clips).
Clips with incomplete labels form an "unknown" child of their deepest known node, so a clip
labelled only at a coarse level is drawn too and trains the coarse structure.
`random` draws uniformly random batches (the paper's RbL_unc).

A whole epoch is drawn at once, vectorised over its batches (a loop over the taxonomy's nodes,
not over batches): drawn batch by batch, the sampler was a tenth of a TUT epoch of the paper's
model on CPU (benchmarks/README.md, "Measurements behind the code").
"""

from __future__ import annotations

import math

import numpy as np

SAMPLERS = ("balanced", "random")
REJECTION_ABOVE = 64  # leaves with more members draw distinct clips by rejection, not by sorting keys


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of uniformly shuffled batches; a last batch of one clip (no pairs) is dropped."""
    order = rng.permutation(n)
    batches = [order[k : k + batch_size] for k in range(0, n, batch_size)]
    return [b for b in batches if len(b) > 1]


class BalancedBatches:
    """Rank-balanced batches over labelled examples (labels (N, L), -1 unknown)."""

    def __init__(self, labels: np.ndarray, batch_size: int) -> None:
        if not len(labels):
            raise ValueError("balanced batches need training examples")
        self.depth = labels.shape[1]
        self.per_leaf = max(2, batch_size // 2**self.depth)
        self.n_batches = max(1, math.ceil(len(labels) / batch_size))
        # Nodes are label prefixes, numbered level by level in sorted order, so children lists
        # come out sorted; -1 codes make the unknown child: (c0, -1) beside (c0, c1) under (c0,).
        ids: dict[tuple[int, ...], int] = {(): 0}
        children: dict[int, list[int]] = {}
        rows = [tuple(row) for row in labels.tolist()]
        for level in range(1, self.depth + 1):
            for prefix in sorted({row[:level] for row in rows}):
                ids[prefix] = len(ids)
                children.setdefault(ids[prefix[:-1]], []).append(ids[prefix])
        self.children = {node: np.array(kids) for node, kids in children.items()}
        leaf_of = np.array([ids[row] for row in rows])
        order = np.argsort(leaf_of, kind="stable")
        leaves, starts = np.unique(leaf_of[order], return_index=True)
        self.members = dict(zip(leaves.tolist(), np.split(order, starts[1:])))

    def epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The epoch's batches: index arrays of clips, children and clips in sorted node order."""
        picks = self.draw(rng)
        if (picks >= 0).all():
            return list(picks)
        return [row[row >= 0] for row in picks]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """(n_batches, 2**L * per_leaf) clip indices, -1 where a node had a single child to draw."""
        nodes = np.zeros((self.n_batches, 1), dtype=np.int64)  # the root
        for _ in range(self.depth):
            below = np.full((self.n_batches, nodes.shape[1], 2), -1, dtype=np.int64)
            flat = below.reshape(-1, 2)
            for node, at in _positions(nodes):
                kids = self.children[node]
                if len(kids) == 1:
                    flat[at, 0] = kids[0]
                    continue
                two = np.argpartition(rng.random((len(at), len(kids))), 1, axis=1)[:, :2]
                two.sort(axis=1)  # two distinct children, uniformly, in sorted order
                flat[at] = kids[two]
            nodes = below.reshape(self.n_batches, -1)
        clips = np.full((nodes.size, self.per_leaf), -1, dtype=np.int64)
        for leaf, at in _positions(nodes):
            members = self.members[leaf]
            clips[at] = members[_distinct_draws(rng, len(at), len(members), self.per_leaf)]
        return clips.reshape(self.n_batches, -1)


def _positions(nodes: np.ndarray):
    """(node, flat positions in nodes) for every node id present (>= 0), in increasing order."""
    flat = nodes.reshape(-1)
    order = np.argsort(flat, kind="stable")
    values, starts = np.unique(flat[order], return_index=True)
    for value, at in zip(values.tolist(), np.split(order, starts[1:])):
        if value >= 0:
            yield value, at


def _distinct_draws(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """(rows, k) indices into n items: distinct within a row when n >= k, else with replacement."""
    if n < k:
        return rng.integers(0, n, size=(rows, k))
    if n <= REJECTION_ABOVE:
        return np.argpartition(rng.random((rows, n)), k - 1, axis=1)[:, :k]
    draws = rng.integers(0, n, size=(rows, k))
    while True:
        ordered = np.sort(draws, axis=1)
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not clash.any():
            return draws
        draws[clash] = rng.integers(0, n, size=(int(clash.sum()), k))
