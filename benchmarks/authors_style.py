"""RbL and its training loop written the way the authors' published code works: the baselines of
rbl_speed.py and train_speed.py.

A Python loop over all pairs reads each pair's rank off the label hierarchy and writes it into a
rank map, one element at a time; the distances, the sorting and the loss are then torch
operations. Same loss as `RankBasedLoss(target="edge")` (rbl_speed.py checks the values agree),
so the timings compare like with like. The training loop draws each batch with a Python sampler
(two coarse classes, two fine classes under each, three clips of each), and scores the validation
split with scikit-learn's silhouette_score after every epoch.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import silhouette_score

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


class AuthorsLoop:
    """The paper's model (linear 128 -> 3, L2 normalisation) trained with SGD, one epoch per call."""

    def __init__(self, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, lr: float,
                 batch_size: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.rng = random.Random(seed)
        self.xt, self.yt = torch.as_tensor(xt), torch.as_tensor(yt)
        self.xv, self.yv = torch.as_tensor(xv), yv
        self.model = torch.nn.Linear(xt.shape[1], 3)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.n_batches = -(-len(xt) // batch_size)
        self.tree: dict[int, dict[int, list[int]]] = {}
        for i, (coarse, fine) in enumerate(yt.tolist()):
            self.tree.setdefault(coarse, {}).setdefault(fine, []).append(i)

    def batch(self) -> list[int]:
        out = []
        for coarse in sorted(self.rng.sample(list(self.tree), 2)):
            for fine in sorted(self.rng.sample(list(self.tree[coarse]), 2)):
                out += self.rng.sample(self.tree[coarse][fine], 3)
        return out

    def epoch(self) -> float:
        """One epoch of training, then the validation mean silhouette over both levels."""
        for _ in range(self.n_batches):
            index = torch.tensor(self.batch())
            embeddings = F.normalize(self.model(self.xt[index]), dim=1)
            loss = rank_based_loss_per_pair(embeddings, self.yt[index])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            val = F.normalize(self.model(self.xv), dim=1).numpy()
        return float(np.mean([silhouette_score(val, self.yv[:, k], metric="cosine") for k in range(2)]))
