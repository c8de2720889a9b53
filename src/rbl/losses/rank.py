"""The rank-based loss (RbL) of Nolasco & Stowell (2021, arXiv:2110.05941), vectorised.

Every pair of the batch gets a rank, its tree distance. Sorting all pair distances, rank r owns
the block of positions [s_r, e_r) that it would fill if the embedding followed the taxonomy
exactly. A pair outside its block is pulled towards a target distance read off the sorted list;
L = mean over decided pairs of I_p * (d_p - t_p)^2.

`RankBasedLoss` runs the edge target on CPU float tensors through `_rank_cpu` (a compiled kernel,
one autograd node, same value and gradient); everything else goes through `rank_based_loss` here.
"""

from __future__ import annotations

import torch

from rbl.losses._rank_cpu import Workspace, edge_rank_loss
from rbl.losses.distances import DISTANCES, pairwise_distance
from rbl.taxonomy import tree_distance

TARGETS = ("edge", "reference")


def rank_based_loss(distances: torch.Tensor, ranks: torch.Tensor, target: str = "edge") -> torch.Tensor:
    """RbL over a flat list of pair distances (P,) and their ranks (P,), -1 meaning undecided.

    target="edge": a misplaced pair's target is the nearest edge of its own block (the distance
    at s_r when it sits too early, at e_r - 1 when too late), held constant.
    target="reference": as the authors' published code, the target of rank r is the r-th
    smallest distance of the batch (r the tree distance, counted from 0), with the gradient
    flowing through it.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    keep = ranks >= 0
    d, r = distances[keep], ranks[keep]
    if d.numel() == 0:
        return distances.sum() * 0.0
    order = torch.argsort(d, stable=True)
    sorted_d = d[order]
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=d.device)
    counts = torch.bincount(r, minlength=int(r.max()) + 1)
    end = torch.cumsum(counts, 0)
    start = end - counts
    s, e = start[r], end[r]
    early, late = position < s, position >= e
    misplaced = early | late
    if target == "edge":
        edge = torch.where(early, s, e - 1).clamp(0, len(d) - 1)
        t = sorted_d.detach()[edge]
    else:
        t = sorted_d[r.clamp(max=len(d) - 1)]
    return (misplaced * (d - t) ** 2).mean()


class RankBasedLoss(torch.nn.Module):
    """RbL as a module: `loss(embeddings (N, D), labels (N, L) int, -1 unknown) -> scalar`."""

    def __init__(self, target: str = "edge", distance: str = "cosine") -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.target, self.distance = target, distance
        self._workspace = Workspace()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target == "edge" and _kernel_applies(embeddings, labels):
            return edge_rank_loss(embeddings, labels, self.distance, self._workspace)
        return self.forward_torch(embeddings, labels)

    def forward_torch(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The device-generic torch path (any device, dtype and target)."""
        n = len(embeddings)
        i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
        dist = pairwise_distance(embeddings, self.distance)[i, j]
        ranks = tree_distance(labels, labels)[i, j]
        return rank_based_loss(dist, ranks, self.target)

    def extra_repr(self) -> str:
        return f"target={self.target!r}, distance={self.distance!r}"


def _kernel_applies(embeddings: torch.Tensor, labels: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel applies: CPU float32/float64 embeddings, CPU labels."""
    return (
        embeddings.device.type == "cpu"
        and labels.device.type == "cpu"
        and embeddings.dtype in (torch.float32, torch.float64)
        and embeddings.dim() == 2
    )
