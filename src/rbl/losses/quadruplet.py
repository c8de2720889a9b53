"""The hierarchical quadruplet loss of Jati et al. (ICASSP 2019), as the RbL paper compares with it.

Two levels: anchor a, positive p (same fine class), semi-positive s (same coarse class, other
fine class), negative n (other coarse class),

    l(a, p, s, n) = max(0, d(a,p) - d(a,s) + m_1) + max(0, d(a,s) - d(a,n) + m_2),

averaged over every valid quadruplet of the batch (online mining of all combinations).

Any depth L: a tuple is an anchor and one member x_r at each tree distance r = 0, 2, ..., 2L
from it (x_0 another sample than the anchor), and

    l = sum over k = 0 .. L-1 of max(0, d(a, x_2k) - d(a, x_2k+2) + m_k),

averaged over all valid tuples; for L = 2 this is the quadruplet loss above, for L = 1 the flat
triplet loss over all triplets. Margins are listed finest first: m_0 separates rank 0 from rank 2
(the paper's m_1). The default is 0.2 at every level (Jati et al.'s own values were not at hand
when this was written). Pairs whose rank an unknown level leaves undecided are in no tuple.

Exact but without enumerating tuples: a term depends on (a, x_2k, x_2k+2) only, and the other
members of its tuples can be any of c_r(a) samples at each other rank r, so it is counted
prod_{r != 2k, 2k+2} c_r(a) times. The loss is then a weighted sum over (anchor, pair of
members), O(N^3) tensor work in chunks of anchors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rbl.losses.distances import DISTANCES, pairwise_distance
from rbl.taxonomy import tree_distance

CHUNK_ELEMENTS = 1 << 22  # (anchors x members x members) per chunk


class QuadrupletLoss(torch.nn.Module):
    """`loss(embeddings (N, D), labels (N, L) int, -1 unknown) -> scalar`.

    margins: one margin per level, finest first (m_0 for rank 0 vs 2, ...), or one float for all.
    """

    def __init__(self, margins: float | Sequence[float] = 0.2, distance: str = "cosine") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.margins = float(margins) if isinstance(margins, (int, float)) else tuple(float(m) for m in margins)
        self.distance = distance

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        depth = labels.shape[1]
        margins = self._margins(depth, embeddings)
        dist = pairwise_distance(embeddings, self.distance)
        with torch.no_grad():
            level = _member_levels(labels)
            weight = _term_weights(level, depth)
        if weight is None:
            return embeddings.sum() * 0.0
        total = embeddings.new_zeros(())
        step = max(1, CHUNK_ELEMENTS // max(1, len(dist)) ** 2)
        for a in range(0, len(dist), step):
            total = total + _chunk_sum(dist[a : a + step], level[a : a + step], weight[a : a + step], margins)
        return total

    def _margins(self, depth: int, like: torch.Tensor) -> torch.Tensor:
        margins = (self.margins,) * depth if isinstance(self.margins, float) else self.margins
        if len(margins) != depth:
            raise ValueError(
                f"{len(margins)} margins given for labels of {depth} levels; give one per level, finest first"
            )
        return torch.tensor(margins, dtype=like.dtype, device=like.device)

    def extra_repr(self) -> str:
        return f"margins={self.margins!r}, distance={self.distance!r}"


def _member_levels(labels: torch.Tensor) -> torch.Tensor:
    """(N, N) rank // 2 of sample j seen from anchor i; -1 for undecided pairs and for j = i."""
    ranks = tree_distance(labels, labels)
    ranks.fill_diagonal_(-1)
    return torch.where(ranks >= 0, ranks // 2, -1)


def _term_weights(level: torch.Tensor, depth: int) -> torch.Tensor | None:
    """(N, L) weight of anchor a's terms at level k: tuples each (a, x_2k, x_2k+2) is in, over all tuples.

    None when the batch has no valid tuple.
    """
    counts = (level[:, :, None] == torch.arange(depth + 1, device=level.device)).sum(dim=1).double()
    ones = counts.new_ones(len(counts), 1)
    before = torch.cumprod(torch.cat([ones, counts[:, :-1]], dim=1), dim=1)  # prod of c_r, r < k
    after = torch.cumprod(torch.cat([ones, counts.flip(1)[:, :-1]], dim=1), dim=1).flip(1)  # prod c_r, r > k
    tuples = before[:, -1] * counts[:, -1]
    total = tuples.sum()
    if total == 0:
        return None
    return before[:, :-1] * after[:, 1:] / total


def _chunk_sum(dist: torch.Tensor, level: torch.Tensor, weight: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    """Weighted hinge sum for a chunk of anchors: dist, level (B, N) rows, weight (B, L)."""
    depth = len(margins)
    k = level.clamp(0, depth - 1)
    inner = (level >= 0) & (level < depth)  # x_2k with a next rank 2k + 2
    pair = inner[:, :, None] & (level[:, None, :] == level[:, :, None] + 1)  # (B, j, l)
    hinge = torch.relu(dist[:, :, None] - dist[:, None, :] + margins[k][:, :, None])
    w = torch.gather(weight, 1, k).to(dist.dtype)
    return (hinge * (pair * w[:, :, None])).sum()
