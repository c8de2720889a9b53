"""Slow, obviously correct reference implementations the tests compare against."""

from __future__ import annotations

import torch


def tree_distance_loop(a: list[int], b: list[int]) -> int:
    """Tree distance of two label rows (-1 unknown) by walking the levels."""
    depth = len(a)
    for level in range(depth):
        if a[level] < 0 or b[level] < 0:
            return -1
        if a[level] != b[level]:
            return 2 * (depth - level)
    return 0


def rank_loss_loop(dist: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    """RbL following DESIGN.md step by step, one pair at a time."""
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
    order = sorted(range(len(pairs)), key=lambda p: (d[p].item(), p))
    position = {p: k for k, p in enumerate(order)}
    sorted_d = [d[p] for p in order]
    total = dist.sum() * 0.0
    for p, (_, _, r) in enumerate(pairs):
        s = sum(1 for _, _, q in pairs if q < r)
        e = s + sum(1 for _, _, q in pairs if q == r)
        if s <= position[p] < e:
            continue
        if target == "edge":
            t = (sorted_d[s] if position[p] < s else sorted_d[e - 1]).detach()
        else:
            t = sorted_d[min(r, len(pairs) - 1)]
        total = total + (d[p] - t) ** 2
    return total / len(pairs)
