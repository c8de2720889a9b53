"""Slow, obviously correct reference implementations of the losses, one pair / tuple at a time.

Each takes the distance matrix (computed with autograd by the caller), so that comparing values
and gradients with the vectorised losses tests the loss logic itself. Also the random batches the
comparisons run on.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


def random_batch(seed: int, depth: int, n: int, dim: int = 4, ties: bool = True, incomplete: bool = True):
    """Labels of a random tree of the given depth (branching 1-3), with duplicates and unknown levels."""
    rng = np.random.default_rng(seed)
    branching = rng.integers(1, 4, size=depth)
    digits = np.stack([rng.integers(0, b, size=n) for b in branching], axis=1)
    labels = np.zeros((n, depth), dtype=np.int64)
    for level in range(depth):
        # Code = index of the prefix: unique per path.
        prefix = [tuple(row[: level + 1]) for row in digits]
        index = {p: k for k, p in enumerate(sorted(set(prefix)))}
        labels[:, level] = [index[p] for p in prefix]
    if incomplete:
        cut = rng.integers(1, depth + 1, size=n)
        cut[rng.random(n) < 0.7] = depth
        labels = np.where(np.arange(depth)[None, :] < cut[:, None], labels, -1)
    x = rng.normal(size=(n, dim))
    if ties:  # duplicated embeddings give exactly tied distances
        dup = rng.random(n) < 0.3
        # Not every row: with all distances 0 the batch is a stationary point (see
        # test_gap_target_pushes_collapsed_embeddings_apart) and both gradients are rounding noise.
        dup[-1] = False
        x[dup] = x[0]
    return torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(labels)


def tree_distance_loop(a: list[int], b: list[int]) -> int:
    """Tree distance of two label rows (-1 unknown): first known level that differs, else 0 or -1."""
    depth = len(a)
    for level in range(depth):
        if a[level] >= 0 and b[level] >= 0 and a[level] != b[level]:
            return 2 * (depth - level)
    return 0 if min(a) >= 0 and min(b) >= 0 else -1


def rank_loss_loop(dist: torch.Tensor, labels: torch.Tensor, target: str, margin: float = 0.0) -> torch.Tensor:
    """RbL following docs/ARCHITECTURE.md step by step, one pair at a time."""
    n = len(labels)
    rows = labels.tolist()
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            r = tree_distance_loop(rows[i], rows[j])
            if r >= 0:
                pairs.append((i, j, r))
    if not pairs:
        return dist.sum() * 0.0
    d = [dist[i, j] for i, j, _ in pairs]
    if target == "gap":  # in units of the mean distance of the decided pairs
        mean = sum(d) / len(d)
        d = [v / torch.clamp(mean, min=1e-12) for v in d]
    order = sorted(range(len(pairs)), key=lambda p: (d[p].item(), p))
    position = {p: k for k, p in enumerate(order)}
    sorted_d = [d[p] for p in order]
    total = dist.sum() * 0.0
    for p, (_, _, r) in enumerate(pairs):
        s = sum(1 for _, _, q in pairs if q < r)
        e = s + sum(1 for _, _, q in pairs if q == r)
        if target == "gap":  # margin / 2 inside the midpoints either side of the block's edges
            weight = len(pairs) / ((e - s) * len({q for _, _, q in pairs}))  # each rank weighs the same
            if s > 0:
                low = (sorted_d[s - 1] + sorted_d[s]).detach() / 2 + margin / 2
                total = total + weight * torch.relu(low - d[p]) ** 2
            if e < len(pairs):
                high = (sorted_d[e - 1] + sorted_d[e]).detach() / 2 - margin / 2
                total = total + weight * torch.relu(d[p] - high) ** 2
            continue
        if s <= position[p] < e:
            continue
        if target == "edge":
            t = (sorted_d[s] if position[p] < s else sorted_d[e - 1]).detach()
        else:
            t = sorted_d[min(r, len(pairs) - 1)]
        total = total + (d[p] - t) ** 2
    return total / len(pairs)


def quadruplet_loss_loop(dist: torch.Tensor, labels: torch.Tensor, margins: list[float]) -> torch.Tensor:
    """Mean over every tuple (a, x_0, x_2, ..., x_2L), x_r at tree distance r from a, x_0 != a, of
    sum_k max(0, d(a, x_2k) - d(a, x_2k+2) + margins[k])."""
    n, depth = labels.shape
    rows = labels.tolist()
    total, count = dist.sum() * 0.0, 0
    for a in range(n):
        rank = [tree_distance_loop(rows[a], rows[j]) for j in range(n)]
        members = [[j for j in range(n) if j != a and rank[j] == 2 * k] for k in range(depth + 1)]
        for tup in itertools.product(*members):
            for k in range(depth):
                total = total + torch.relu(dist[a, tup[k]] - dist[a, tup[k + 1]] + margins[k])
            count += 1
    return total / count if count else total


def triplet_semihard_loop(dist: torch.Tensor, fine: torch.Tensor, margin: float) -> torch.Tensor:
    """TensorFlow Addons' triplet_semihard_loss on the rows with fine >= 0, one positive pair at a time."""
    keep = [i for i in range(len(fine)) if fine[i] >= 0]
    total, count = dist.sum() * 0.0, 0
    for a in keep:
        negatives = [n for n in keep if fine[n] != fine[a]]
        for p in keep:
            if p == a or fine[p] != fine[a]:
                continue
            farther = [n for n in negatives if dist[a, n] > dist[a, p]]
            if farther:  # the nearest farther negative; the first in index order among ties
                neg = min(farther, key=lambda n: dist[a, n].item())
                d_neg = dist[a, neg]
            elif negatives:  # the farthest negative; the last in index order among ties
                neg = max(reversed(negatives), key=lambda n: dist[a, n].item())
                d_neg = dist[a, neg]
            else:  # no negative at all: TFA's masked maximum gives 0
                d_neg = 0.0
            total = total + torch.relu(dist[a, p] - d_neg + margin)
            count += 1
    return total / count if count else total
