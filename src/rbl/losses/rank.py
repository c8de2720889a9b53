"""The rank-based loss (RbL) of Nolasco & Stowell (2021, arXiv:2110.05941), vectorised.

Every pair of the batch gets a rank, its tree distance. Sorting all pair distances, rank r owns
the block of positions [s_r, e_r) that it would fill if the embedding followed the taxonomy
exactly. A pair is pulled into an interval [lo_r, hi_r] read off the sorted list, at the cost
l_p = relu(lo_r - d_p)^2 + relu(d_p - hi_r)^2, by one of three targets:

- "gap" (the default): distances are first divided by their mean over the batch's decided pairs
  (gradient through the mean), so the loss does not change with the scale of the embedding and
  shrinking it gains nothing. Then lo_r and hi_r lie margin / 2 inside the boundaries between
  rank r's block and its neighbours' (a boundary: the midpoint of the two sorted distances either
  side of it). The loss is zero only when every block is in place and consecutive blocks are at
  least `margin` mean distances apart, so collapsing a class or the batch onto a point is never a
  minimum.
  L = mean over the ranks present of the mean l_p of their pairs: every level of the taxonomy
  weighs the same, however many pairs it has (a batch of 12 holds 12 same-leaf pairs and 36
  pairs across roots).
- "edge": lo_r and hi_r are the first and last sorted distance of rank r's own block, i.e. the
  target of a misplaced pair is the nearest edge of its block; L = mean over pairs of l_p. Ties
  between consecutive blocks, and equal distances everywhere, cost nothing: collapse is a
  zero-loss solution (seen on real audio), which is why it is no longer the default.
- "reference": the authors' published code: a misplaced pair's target is the r-th smallest
  distance of the batch (r the tree distance, counted from 0), the gradient flowing through it.

The boundaries of "gap" and "edge" are held constant (detached). `RankBasedLoss` runs "gap" and
"edge" on CPU float tensors through `_rank_cpu` (a compiled kernel, one autograd node, same value
and gradient); everything else goes through `rank_based_loss` here.
"""

from __future__ import annotations

import torch

from rbl.losses._rank_cpu import EPS_MEAN, Workspace, block_rank_loss
from rbl.losses.distances import DISTANCES, pairwise_distance
from rbl.taxonomy import tree_distance

TARGETS = ("gap", "edge", "reference")
KERNEL_TARGETS = ("gap", "edge")


def rank_based_loss(
    distances: torch.Tensor, ranks: torch.Tensor, target: str = "gap", margin: float = 0.6
) -> torch.Tensor:
    """RbL over a flat list of pair distances (P,) and their ranks (P,), -1 meaning undecided.

    `margin` is the gap that target="gap" demands between consecutive blocks, in mean distances
    (the workflow's `gap` setting); the other targets ignore it. See the module docstring for the targets.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    keep = ranks >= 0
    d, r = distances[keep], ranks[keep]
    if d.numel() == 0:
        return distances.sum() * 0.0
    if target == "reference":
        return _reference_loss(d, r)
    if target == "gap":  # in units of the mean distance: shrinking everything gains nothing
        d = d / d.mean().clamp_min(EPS_MEAN)
    sorted_d = torch.sort(d.detach()).values
    counts = torch.bincount(r, minlength=int(r.max()) + 1)
    end = torch.cumsum(counts, 0)
    present = counts > 0
    last = len(d) - 1
    if target == "edge":
        lo = sorted_d[(end - counts).clamp(max=last)]
        hi = sorted_d[(end - 1).clamp(min=0)]
    else:
        # Boundary after rank c: between sorted positions end_c - 1 and end_c.
        boundary = (sorted_d[(end - 1).clamp(0, last)] + sorted_d[end.clamp(max=last)]) / 2
        ranks_present = torch.nonzero(present).flatten()
        inf = torch.full_like(boundary, torch.inf)
        hi, lo = inf.clone(), -inf
        hi[ranks_present[:-1]] = boundary[ranks_present[:-1]] - margin / 2
        lo[ranks_present[1:]] = boundary[ranks_present[:-1]] + margin / 2
    term = torch.relu(lo[r] - d) ** 2 + torch.relu(d - hi[r]) ** 2
    if target == "edge":
        return term.mean()
    return (term / counts[r]).sum() / present.sum()


def _reference_loss(d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The authors' target: misplaced pairs pulled to the r-th smallest distance, gradient through it."""
    order = torch.argsort(d, stable=True)
    sorted_d = d[order]
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=d.device)
    counts = torch.bincount(r, minlength=int(r.max()) + 1)
    end = torch.cumsum(counts, 0)
    start = end - counts
    misplaced = (position < start[r]) | (position >= end[r])
    t = sorted_d[r.clamp(max=len(d) - 1)]
    return (misplaced * (d - t) ** 2).mean()


class RankBasedLoss(torch.nn.Module):
    """RbL as a module: `loss(embeddings (N, D), labels (N, L) int, -1 unknown) -> scalar`."""

    def __init__(self, target: str = "gap", distance: str = "cosine", margin: float = 0.6) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self.target, self.distance = target, distance
        self.margin = float(margin) if target == "gap" else 0.0
        self._workspace = Workspace()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.target in KERNEL_TARGETS and _kernel_applies(embeddings, labels):
            return block_rank_loss(embeddings, labels, self.distance, self.target, self.margin, self._workspace)
        return self.forward_torch(embeddings, labels)

    def forward_torch(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The device-generic torch path (any device, dtype and target)."""
        n = len(embeddings)
        i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
        dist = pairwise_distance(embeddings, self.distance)[i, j]
        ranks = tree_distance(labels, labels)[i, j]
        return rank_based_loss(dist, ranks, self.target, self.margin)

    def extra_repr(self) -> str:
        return f"target={self.target!r}, distance={self.distance!r}, margin={self.margin!r}"


def _kernel_applies(embeddings: torch.Tensor, labels: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel applies: CPU float32/float64 embeddings, CPU labels."""
    return (
        embeddings.device.type == "cpu"
        and labels.device.type == "cpu"
        and embeddings.dtype in (torch.float32, torch.float64)
        and embeddings.dim() == 2
    )
