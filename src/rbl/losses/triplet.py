"""Flat triplet loss on the finest labels with semi-hard online mining (TensorFlow Addons semantics).

As `tfa.losses.triplet_semihard_loss`: for every positive pair (a, p), a != p, the negative is
the one with the smallest d(a, n) among those farther than p (d(a, n) > d(a, p)); if there is
none, the one with the largest d(a, n). The loss is the mean over positive pairs of
max(0, d(a, p) - d(a, n) + margin). An anchor without any negative takes d(a, n) = 0 (TFA's
masked maximum falls back to the row minimum, the zero self-distance). Rows whose finest label
is unknown (-1) are left out; with no positive pair the loss is 0 (TFA divides 0 by 0).

Mining sorts each anchor's negative distances once and finds every positive's semi-hard negative
by binary search: O(N^2 log N), no (a, p, n) tensor. Among tied negatives the gradient goes to
one of them (the first in index order for the semi-hard one, the last for the hardest).
"""

from __future__ import annotations

import torch

from rbl.losses.distances import DISTANCES, pairwise_distance


class TripletLoss(torch.nn.Module):
    """`loss(embeddings (N, D), labels (N, L) int, -1 unknown) -> scalar`, on labels[:, -1]."""

    def __init__(self, margin: float = 0.2, distance: str = "cosine") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.margin, self.distance = float(margin), distance

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        fine = labels[:, -1] if labels.dim() == 2 else labels  # (N,) labels taken as the finest level
        known = fine >= 0
        x, y = embeddings[known], fine[known]
        positive = (y[:, None] == y[None, :]).fill_diagonal_(False)
        n_positive = int(positive.sum())
        if n_positive == 0:
            return embeddings.sum() * 0.0
        dist = pairwise_distance(x, self.distance)
        negative_d = semihard_negatives(dist, y[:, None] != y[None, :])
        loss = torch.relu(dist - negative_d + self.margin)
        return loss[positive].sum() / n_positive

    def extra_repr(self) -> str:
        return f"margin={self.margin!r}, distance={self.distance!r}"


def semihard_negatives(dist: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """(N, N) d(a, n) of the semi-hard negative of every pair (a, p); `negative` (N, N) bool."""
    ordered, _ = torch.sort(torch.where(negative, dist, torch.inf), dim=1, stable=True)
    n_negative = negative.sum(dim=1, keepdim=True)
    with torch.no_grad():
        first_farther = torch.searchsorted(ordered.detach(), dist.detach(), right=True)
    has_farther = first_farther < n_negative
    semihard = ordered.gather(1, first_farther.clamp(max=len(dist) - 1))
    hardest = ordered.gather(1, (n_negative - 1).clamp(min=0))
    hardest = torch.where(n_negative > 0, hardest, torch.zeros_like(hardest))
    return torch.where(has_farther, semihard, hardest)
