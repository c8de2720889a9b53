"""RbL with the edge target on CPU: NumPy forward and analytic gradient, one autograd node.

Why: on CPU this loss is bookkeeping over small arrays, where torch's per-operator and autograd
costs dominate (a bare normalise-matmul graph takes about 0.3 ms forward+backward at batch 12 on
the benchmark machine, more than the whole of this path). Value and gradient equal
`rank_based_loss(pairwise_distance(x)[i, j], tree_distance(labels, labels)[i, j], "edge")`
(tests/test_losses.py checks it).

How: with t_p = clamp(d_p, lo_r, hi_r), lo_r and hi_r the sorted distances at the first and last
position of rank r's block, (d_p - t_p)^2 equals the loss term I_p (d_p - t_p)^2 of every pair,
tied or not (a misplaced pair equal to its edge contributes 0 either way), so no full sort is
needed: only the order statistics at the block boundaries (`np.partition` on large batches).
The samples are ordered by label group, so lo and hi over the N x N pair matrix are constant
blocks (see `_groups`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from rbl.losses._groups import LabelGroups, label_groups

EPS_NORM = 1e-12  # F.normalize's eps
EPS_SQUARED = 1e-12  # pairwise_distance's floor on squared euclidean distances
SORT_UP_TO = 4096  # order statistics by a full sort up to this many matrix entries, else by selection


def edge_rank_loss(embeddings: torch.Tensor, labels: torch.Tensor, distance: str) -> torch.Tensor:
    """RbL (edge target) of CPU float embeddings (N, D) with labels (N, L); one autograd node."""
    if torch.is_grad_enabled() and embeddings.requires_grad:
        return _EdgeRankLoss.apply(embeddings, labels, distance)
    loss, _ = loss_and_grad(embeddings.detach().numpy(), labels.numpy(), distance, want_grad=False)
    return torch.from_numpy(np.asarray(loss, dtype=_numpy_dtype(embeddings)))


class _EdgeRankLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, embeddings: torch.Tensor, labels: torch.Tensor, distance: str) -> torch.Tensor:
        loss, grad = loss_and_grad(embeddings.detach().numpy(), labels.numpy(), distance)
        ctx.grad = torch.from_numpy(grad)
        return torch.from_numpy(np.asarray(loss, dtype=grad.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.grad, None, None


def loss_and_grad(x: np.ndarray, labels: np.ndarray, distance: str, want_grad: bool = True):
    """(loss, d loss / d x or None) for embeddings x (N, D) and labels (N, L), -1 unknown."""
    groups = label_groups(labels)
    n_pairs = int(groups.pairs[:-1].sum())
    if n_pairs == 0:
        return 0.0, np.zeros_like(x) if want_grad else None
    xs = x if groups.order is None else x[groups.order]
    dist, vjp = _DISTANCES[distance](xs)
    lo, hi = _block_edges(dist, groups)
    resid = groups.expand(lo[groups.level])
    np.maximum(dist, resid, out=resid)
    np.minimum(resid, groups.expand(hi[groups.level]), out=resid)
    np.subtract(dist, resid, out=resid)  # d_p - t_p, 0 unless p is misplaced
    if groups.order is not None:
        resid.flat[:: len(resid) + 1] = 0.0  # a sample is no pair (ungrouped: level L + 1 did it)
    loss = float(np.vdot(resid, resid)) / (2 * n_pairs)
    if not want_grad:
        return loss, None
    grad = vjp(resid, 2.0 / n_pairs)  # d loss / d d_p = 2 (d_p - t_p) / P, at [i, j] and [j, i]
    if groups.order is None:
        return loss, grad
    out = np.empty_like(grad)
    out[groups.order] = grad
    return loss, out


def _block_edges(dist: np.ndarray, groups: LabelGroups) -> tuple[np.ndarray, np.ndarray]:
    """lo, hi (L + 2,) by level: the sorted pair distances at the edges of each rank's block.

    The undecided slot gets (-inf, +inf): its pairs are never pulled. Small batches sort the
    whole matrix; large ones select the few order statistics needed from the upper triangle.
    """
    if dist.size <= SORT_UP_TO:
        return _edges_by_sort(dist, groups)
    return _edges_by_selection(dist, groups)


def _edges_by_sort(dist: np.ndarray, groups: LabelGroups) -> tuple[np.ndarray, np.ndarray]:
    """Each pair sits twice in the symmetric matrix, so with the diagonal at -inf and undecided
    pairs at +inf, sorted position q of the pair list is position n + 2q (and n + 2q + 1)."""
    n, c = len(dist), len(groups.pairs) - 1
    values = dist.copy()
    if groups.pairs[-1]:
        np.copyto(values, np.inf, where=groups.expand(groups.level == c))
    values.flat[:: n + 1] = -np.inf
    values = values.reshape(-1)
    values.sort()
    counts = groups.pairs[:-1]
    after = 2 * np.cumsum(counts) + n
    # First and last position of every block, then the undecided slot: position 0 (-inf) and
    # the last one (+inf when a pair is undecided, else unused).
    at = np.empty(2 * (c + 1), dtype=np.intp)
    np.subtract(after, 2 * counts, out=at[:c])
    np.subtract(after, 1, out=at[c + 1 : -1])
    at[c], at[-1] = 0, values.size - 1
    edges = values.take(at, mode="clip")  # absent ranks may point past the end: unused
    return edges[: c + 1], edges[c + 1 :]


def _edges_by_selection(dist: np.ndarray, groups: LabelGroups) -> tuple[np.ndarray, np.ndarray]:
    """One `np.partition` per boundary between consecutive present ranks (NumPy's SIMD selection
    takes one kth at a time), largest first so that each next one only scans what lies left of
    the last; undecided pairs at +inf sort last."""
    n, c = len(dist), len(groups.pairs) - 1
    upper = _upper_triangle(n)
    values = dist.reshape(-1).take(upper)
    if groups.pairs[-1]:
        np.putmask(values, groups.expand(groups.level == c).reshape(-1).take(upper), np.inf)
    lo = np.full(c + 1, -np.inf, dtype=dist.dtype)
    hi = np.full(c + 1, np.inf, dtype=dist.dtype)
    counts = groups.pairs[:-1]
    ends = np.cumsum(counts)
    present = np.flatnonzero(counts)
    stop = values.size
    for before, after in zip(present[-2::-1], present[:0:-1]):
        k = int(ends[before]) - 1
        part = values[:stop]
        part.partition(k)
        hi[before], lo[after] = part[k], part[k + 1 :].min()
        stop = k + 1
    return lo, hi


@lru_cache(maxsize=8)
def _upper_triangle(n: int) -> np.ndarray:
    """Flat indices of the entries above the diagonal of an n x n matrix."""
    upper = np.flatnonzero(np.triu(np.ones((n, n), dtype=bool), 1))
    upper.flags.writeable = False
    return upper


def _cosine(x: np.ndarray):
    """Cosine distances as `pairwise_distance(x, "cosine")`, and the backward of a pair-sum loss."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    denom = np.maximum(norm, EPS_NORM)
    unit = x / denom
    dist = np.dot(unit, np.ascontiguousarray(unit.T))
    np.subtract(1.0, dist, out=dist)

    def vjp(grad_dist: np.ndarray, scale: float) -> np.ndarray:
        """d loss / d x for d loss / d dist = scale * grad_dist (symmetric, zero diagonal)."""
        grad_unit = np.dot(grad_dist, unit)
        radial = np.einsum("ij,ij->i", grad_unit, unit)[:, None] * (norm >= EPS_NORM)
        return (grad_unit - radial * unit) * (-scale / denom)

    return dist, vjp


def _euclidean(x: np.ndarray):
    """Euclidean distances as `pairwise_distance(x, "euclidean")`, and the backward of a pair-sum loss."""
    sq = np.einsum("ij,ij->i", x, x)
    squared = sq[:, None] + sq[None, :] - np.dot(2.0 * x, np.ascontiguousarray(x.T))
    dist = np.sqrt(np.maximum(squared, EPS_SQUARED))

    def vjp(grad_dist: np.ndarray, scale: float) -> np.ndarray:
        """d loss / d x for d loss / d dist = scale * grad_dist (symmetric, zero diagonal)."""
        h = grad_dist * (squared >= EPS_SQUARED) / dist
        return (h.sum(axis=1)[:, None] * x - np.dot(h, x)) * scale

    return dist, vjp


def _numpy_dtype(tensor: torch.Tensor) -> np.dtype:
    return np.float32 if tensor.dtype == torch.float32 else np.float64


_DISTANCES = {"cosine": _cosine, "euclidean": _euclidean}
