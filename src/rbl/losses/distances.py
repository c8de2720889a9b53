"""Pairwise embedding distances used by the losses and the metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISTANCES = ("cosine", "euclidean")


def pairwise_distance(x: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """(N, N) distances between the rows of x: cosine (1 - cosine similarity) or euclidean."""
    if distance == "cosine":
        unit = F.normalize(x, dim=1)
        return 1.0 - unit @ unit.T
    if distance == "euclidean":
        # Squared norms expansion, clamped, with a zero diagonal: cdist's backward is NaN at 0.
        sq = (x * x).sum(dim=1)
        d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        return torch.where(eye, torch.zeros_like(d2), d2.clamp_min(1e-12).sqrt())
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
