"""RbL written per pair, the way the authors' published code works: the baseline of rbl_speed.py.

A Python loop over all pairs reads each pair's rank off the label hierarchy and writes it into a
rank map, one element at a time; the distances, the sorting and the loss are then torch
operations. Same loss as `RankBasedLoss(target="edge")` (the
benchmark checks the values agree), so the timings compare like with like.
"""

from __future__ import annotations

import torch

from rbl.losses import pairwise_distance


def pair_rank(a: list[int], b: list[int]) -> int:
    """Tree distance of two label paths (coarsest first, -1 unknown), walking the levels."""
    depth = len(a)
    for level in range(depth):
        if a[level] < 0 or b[level] < 0:
            return -1
        if a[level] != b[level]:
            return 2 * (depth - level)
    return 0


def rank_based_loss_per_pair(embeddings: torch.Tensor, labels: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """RbL (edge target): a Python loop over the pairs fills the rank map, then torch operations."""
    rows = labels.tolist()
    n = len(rows)
    ranks = torch.full((n, n), -1, dtype=torch.long)
    for i in range(n):
        for j in range(i + 1, n):
            ranks[i, j] = pair_rank(rows[i], rows[j])
    i, j = torch.triu_indices(n, n, offset=1)
    r = ranks[i, j].to(embeddings.device)
    d = pairwise_distance(embeddings, distance)[i, j]
    keep = r >= 0
    d, r = d[keep], r[keep]
    if len(d) == 0:
        return embeddings.sum() * 0.0
    sorted_d, order = torch.sort(d.detach(), stable=True)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(d), device=d.device)
    counts = torch.bincount(r)
    end = torch.cumsum(counts, 0)
    start = end - counts
    s, e = start[r], end[r]
    early, late = position < s, position >= e
    target = sorted_d[torch.where(early, s, e - 1).clamp(0, len(d) - 1)]
    return ((early | late) * (d - target) ** 2).mean()
