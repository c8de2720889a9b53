"""RbL with the gap and edge targets on CPU: a compiled kernel (numba) for value and gradient, one autograd node.

Why compiled rather than torch or NumPy operators: on CPU this loss is bookkeeping over small
arrays, where per-operator costs dominate (a bare torch graph or some 40 NumPy calls cost tens of
times the kernel at batch 12; benchmarks/README.md, "RbL speed"), leaving the fixed cost of one
autograd node. The torch path in `rank.py` stays the device-generic implementation (GPU,
reference target).

Value and gradient equal `rank_based_loss(pairwise_distance(x)[i, j], tree_distance(labels,
labels)[i, j], target, margin)`, computed in float64 (tests/test_losses.py checks both against
the pair-by-pair loop and the torch path).

How: both targets bound each pair by an interval [lo_r, hi_r] that depends only on the sorted
distances either side of the boundaries between consecutive blocks, so no sort is needed: only
those order statistics (`_order_statistics`). Pair ranks are
looked up in a table between the batch's distinct label rows. The passes over the N (N - 1) / 2
pairs run along memory so that the compiler vectorises them: distances and levels; the order
statistics (two more passes on large batches); residuals; the gradient (`_scatter`). Buffers for
the pairs are kept between calls (`Workspace`): 9 bytes per pair.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

EPS_NORM = 1e-12  # F.normalize's eps
EPS_SQUARED = 1e-12  # pairwise_distance's floor on squared euclidean distances
EPS_MEAN = 1e-12  # floor on the mean distance that the gap target divides by
UNDECIDED = -1
COSINE, EUCLIDEAN = 0, 1
_KINDS = {"cosine": COSINE, "euclidean": EUCLIDEAN}
EDGE, GAP = 0, 1
_TARGETS = {"edge": EDGE, "gap": GAP}
BUCKETS = 4096  # order statistics of more than 4 x this many pairs go through value buckets
MAX_LEVELS = 60  # rank levels are stored as int8, with FLOORED added
FLOORED = 64  # marks a pair whose euclidean distance the floor holds


class Workspace:
    """Pair buffers kept between calls: a batch of 1024 needs 4.7 MB of them, and allocating that
    afresh on every call costs more than the loss itself (page faults). One per loss module, so a
    module must not be called from two threads at once."""

    def __init__(self) -> None:
        self.dist = np.empty(0)
        self.level = np.empty(0, dtype=np.int8)

    def buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffers for the pairs of n samples (grown, never shrunk)."""
        pairs = n * (n - 1) // 2
        if len(self.dist) < pairs:
            self.dist = np.empty(pairs)
            self.level = np.empty(pairs, dtype=np.int8)
        return self.dist, self.level


def block_rank_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    distance: str,
    target: str,
    margin: float,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """RbL (gap or edge target) of CPU float embeddings (N, D) with labels (N, L); one autograd node."""
    workspace = workspace or Workspace()
    if torch.is_grad_enabled() and embeddings.requires_grad:
        return _BlockRankLoss.apply(embeddings, labels, distance, target, margin, workspace)
    loss, _ = loss_and_grad(
        embeddings.detach().numpy(), labels.numpy(), distance, False, workspace, target=target, margin=margin
    )
    return torch.tensor(loss, dtype=embeddings.dtype)


class _BlockRankLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        distance: str,
        target: str,
        margin: float,
        workspace: Workspace,
    ) -> torch.Tensor:
        loss, grad = loss_and_grad(
            embeddings.detach().numpy(), labels.numpy(), distance, True, workspace, target=target, margin=margin
        )
        ctx.grad = torch.from_numpy(grad)
        return torch.tensor(loss, dtype=embeddings.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.grad, None, None, None, None, None


def loss_and_grad(
    x: np.ndarray,
    labels: np.ndarray,
    distance: str,
    want_grad: bool = True,
    workspace: Workspace | None = None,
    buckets: int = BUCKETS,
    *,
    target: str,
    margin: float,
):
    """(loss, d loss / d x or None) for embeddings x (N, D) and labels (N, L), negative = unknown.

    target: "gap" (with `margin`) or "edge" (margin unused), as `rank_based_loss`. The kernel
    computes in float64; the gradient comes back in x's dtype.
    """
    if target not in _TARGETS:
        raise ValueError(f"the CPU kernel computes the targets {tuple(_TARGETS)}, not {target!r}")
    if labels.ndim != 2 or labels.shape[1] > MAX_LEVELS or len(labels) != len(x):
        raise ValueError(f"labels must be (N, L) with N = {len(x)} and L <= {MAX_LEVELS}, got {labels.shape}")
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    codes = np.ascontiguousarray(labels, dtype=np.int64)
    dist, level = (workspace or Workspace()).buffers(len(x))
    loss, grad = _kernel(x64, codes, _KINDS[distance], want_grad, dist, level, buckets, _TARGETS[target], float(margin))
    if np.isnan(loss):  # the kernel's sign of a distance that is not finite
        what = (
            "the embeddings hold NaN or Inf"
            if not np.isfinite(x64).all()
            else f"pair distances overflow (embeddings of magnitude {np.abs(x64).max():.3g})"
        )
        raise ValueError(f"RankBasedLoss: {what}; has training diverged? try a lower learning rate")
    return loss, (grad.astype(x.dtype, copy=False) if want_grad else None)


def tree_distance_np(a: np.ndarray) -> np.ndarray:
    """`rbl.taxonomy.tree_distance(a, a)` as the kernel computes it: (N, N) ranks 0, 2, ..., 2L, or -1."""
    return _tree_distances(np.ascontiguousarray(a, dtype=np.int64))


@numba.njit(cache=True, inline="always")
def _pair_rank(labels: np.ndarray, i: int, j: int) -> int:
    """Tree distance of rows i and j: 2 (L - first level where both are known and differ), else 0
    when both rows are complete, else UNDECIDED (an unknown level leaves it open).

    Written without early exits (the compiler makes the ifs selects): with random labels the
    branches of a level-by-level search mispredict, which cost more than the whole comparison.
    """
    depth = labels.shape[1]
    first = depth
    complete = True
    for level in range(depth - 1, -1, -1):
        a, b = labels[i, level], labels[j, level]
        known = (a >= 0) & (b >= 0)
        complete &= known
        if known & (a != b):
            first = level
    rank = 2 * (depth - first)
    if (first == depth) & ~complete:
        rank = UNDECIDED
    return rank


@numba.njit(cache=True)
def _tree_distances(labels: np.ndarray) -> np.ndarray:
    n = labels.shape[0]
    out = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            out[i, j] = _pair_rank(labels, i, j)
    return out


@numba.njit(cache=True)
def _select(values: np.ndarray, stop: int, k: int) -> None:
    """Reorder values[:stop] so that values[k] is its k-th smallest, smaller ones before, larger after
    (quickselect, median-of-three pivots, Hoare partition)."""
    lo, hi = 0, stop - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[hi] < values[mid]:
            values[hi], values[mid] = values[mid], values[hi]
        pivot = values[mid]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(cache=True)
def _order_statistics(
    values: np.ndarray, level: np.ndarray, n: int, positions: np.ndarray, buckets: int, low: float, high: float
) -> np.ndarray:
    """The values at the given positions (ascending) of the n decided values (level >= 0) sorted;
    low and high are the smallest and largest of them.

    Few values (up to 4 x buckets): quickselect on a copy. Many: one pass counts them into
    `buckets` linear value buckets (monotone in the value, so bucket order is sorted order), a
    second copies out only the buckets holding a wanted position, and quickselect runs inside
    those: two passes over the pairs instead of one quickselect per position.
    """
    m = len(positions)
    out = np.empty(m)
    if n <= 4 * buckets:
        scratch = np.empty(n)
        fill = 0
        for q in range(len(values)):
            if level[q] >= 0:
                scratch[fill] = values[q]
                fill += 1
        stop = n
        for t in range(m - 1, -1, -1):  # largest first: each next one lies left of the last
            _select(scratch, stop, positions[t])
            out[t] = scratch[positions[t]]
            stop = positions[t] + 1
        return out
    if not high > low:
        out[:] = low
        return out
    scale = buckets / (high - low)
    counts = np.zeros(buckets + 1, dtype=np.int64)
    for q in range(len(values)):
        if level[q] >= 0:
            counts[min(int((values[q] - low) * scale), buckets - 1) + 1] += 1
    starts = np.cumsum(counts)  # bucket b holds sorted positions [starts[b], starts[b + 1])
    bucket = np.searchsorted(starts, positions, side="right") - 1
    offset = np.full(buckets, -1, dtype=np.int64)
    size = 0
    for b in bucket:
        if offset[b] < 0:
            offset[b] = size
            size += starts[b + 1] - starts[b]
    scratch = np.empty(size)
    fill = offset.copy()
    for q in range(len(values)):
        if level[q] >= 0:
            b = min(int((values[q] - low) * scale), buckets - 1)
            if offset[b] >= 0:
                scratch[fill[b]] = values[q]
                fill[b] += 1
    for t in range(m):
        b = bucket[t]
        part = scratch[offset[b] : offset[b] + starts[b + 1] - starts[b]]
        k = positions[t] - starts[b]
        _select(part, len(part), k)
        out[t] = part[k]
    return out


@numba.njit(cache=True)
def _label_groups(labels: np.ndarray):
    """Rows grouped by equal labels: (group of each row, (G, G) rank levels between groups (rank // 2,
    -1 undecided), rows per group). A batch holds few distinct label rows (the taxonomy's leaves),
    so ranks are worked out between groups once and looked up per pair."""
    n, depth = labels.shape
    group = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)  # a row of each group
    count = 0
    for i in range(n):
        found = count
        for g in range(count):
            same = True
            for level in range(depth):
                same &= labels[i, level] == labels[first[g], level]
            if same:
                found = g
                break
        if found == count:
            first[count] = i
            count += 1
        group[i] = found
    table = np.empty((count, count), dtype=np.int8)
    for a in range(count):
        for b in range(count):
            rank = _pair_rank(labels, first[a], first[b])
            table[a, b] = -1 if rank == UNDECIDED else rank // 2
    return group, table, np.bincount(group, minlength=count)


@numba.njit(cache=True)
def _columns(x: np.ndarray, kind: int):
    """The rows as the distance sees them, transposed (D, N) so that the loops over a row's partners
    run along memory: unit vectors (cosine) or the embeddings (euclidean). Also each row's norm,
    what it was divided by, and each column's squared norm."""
    n, dim = x.shape
    cols = np.empty((dim, n))
    norms = np.empty(n)
    denom = np.ones(n)
    squares = np.zeros(n)
    for i in range(n):
        norm = 0.0
        for k in range(dim):
            norm += x[i, k] * x[i, k]
        norms[i] = np.sqrt(norm)
        if kind == COSINE:
            denom[i] = max(norms[i], EPS_NORM)
        for k in range(dim):
            cols[k, i] = x[i, k] / denom[i]
            squares[i] += cols[k, i] * cols[k, i]
    return cols, norms, denom, squares


@numba.njit(cache=True)
def _pairs_per_level(table: np.ndarray, sizes: np.ndarray, depth: int) -> np.ndarray:
    """Decided pairs at each level (rank // 2), from the label groups' sizes and rank table."""
    counts = np.zeros(depth + 1, dtype=np.int64)
    for a in range(len(sizes)):
        for b in range(a, len(sizes)):
            if table[a, b] >= 0:
                counts[table[a, b]] += sizes[a] * (sizes[a] - 1) // 2 if a == b else sizes[a] * sizes[b]
    return counts


@numba.njit(cache=True)
def _pair_distances(
    cols: np.ndarray,
    squares: np.ndarray,
    group: np.ndarray,
    table: np.ndarray,
    kind: int,
    dist: np.ndarray,
    level: np.ndarray,
):
    """Every pair i < j, row by row, into dist and level: distance, and level = rank // 2 (-1
    undecided; + FLOORED where the euclidean floor holds the distance, so it passes no gradient).
    Returns the pair count, the smallest and largest decided distance, their sum, and whether every
    distance is finite."""
    dim, n = cols.shape
    low, high = np.inf, -np.inf
    decided_sum = 0.0
    finite = True
    start = 0
    for i in range(n - 1):
        seg = dist[start : start + n - i - 1]
        seg[:] = 0.0
        for k in range(dim):
            ci, ck = cols[k, i], cols[k, i + 1 :]
            for t in range(len(seg)):
                seg[t] += ci * ck[t]
        ranks = table[group[i]]
        for t in range(len(seg)):
            j = i + 1 + t
            c = ranks[group[j]]
            if kind == COSINE:
                d = 1.0 - seg[t]
            else:
                squared = squares[i] + squares[j] - 2.0 * seg[t]
                d = np.sqrt(max(squared, EPS_SQUARED))
                if squared < EPS_SQUARED and c >= 0:
                    c += FLOORED
            finite &= np.isfinite(d)
            seg[t] = d
            level[start + t] = c
            if c >= 0:
                low, high = min(low, d), max(high, d)
                decided_sum += d
        start += len(seg)
    return start, low, high, decided_sum, finite


@numba.njit(cache=True)
def _bounds(
    dist: np.ndarray,
    level: np.ndarray,
    counts: np.ndarray,
    buckets: int,
    low: float,
    high: float,
    decided_sum: float,
    target: int,
    margin: float,
):
    """Each level's interval [lo, hi] and the distance unit. Edge: the first and last sorted distance
    of its block. Gap: margin / 2 inside the boundaries (midpoints of the sorted distances either
    side of each edge between consecutive blocks), in units of the mean decided distance. The
    lowest present level has nothing before it and the highest nothing after: -inf and +inf."""
    depth = len(counts) - 1
    p = counts.sum()
    lo = np.full(depth + 1, -np.inf)
    hi = np.full(depth + 1, np.inf)
    ends = np.cumsum(counts)
    present = np.flatnonzero(counts)
    positions = np.empty(2 * (len(present) - 1), dtype=np.int64)
    for b in range(len(present) - 1):  # the boundary after level present[b]
        positions[2 * b] = ends[present[b]] - 1
        positions[2 * b + 1] = ends[present[b]]
    edges = _order_statistics(dist, level, p, positions, buckets, low, high)
    unit = max(decided_sum / p, EPS_MEAN) if target == GAP else 1.0
    for b in range(len(present) - 1):
        if target == GAP:
            middle = 0.5 * (edges[2 * b] + edges[2 * b + 1]) / unit
            hi[present[b]] = middle - 0.5 * margin
            lo[present[b + 1]] = middle + 0.5 * margin
        else:
            hi[present[b]] = edges[2 * b]
            lo[present[b + 1]] = edges[2 * b + 1]
    return lo, hi, unit


@numba.njit(cache=True)
def _loss_and_weights(
    dist: np.ndarray,
    level: np.ndarray,
    counts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    unit: float,
    target: int,
    kind: int,
) -> float:
    """The loss; each pair's distance in `dist` is replaced by its weight in the gradient.

    Residuals r_p = relu(d_p - hi) - relu(lo - d_p) (a level's gap interval may be empty: then both
    bounds pull); the loss term is their squares' sum, weighted 1 / P per pair (edge) or
    1 / (levels present x pairs of the level) (gap). d loss / d d_p = 2 w_p r_p, over d_p for the
    euclidean distance (d d_p / d x_i = (x_i - x_j) / d_p). For gap the mean couples every pair:
    with S = sum_p g_p d~_p, d loss / d d_q = (g_q - S / P) / unit.
    """
    p = counts.sum()
    present = np.flatnonzero(counts)
    weight = np.full(len(counts), 1.0 / p)
    if target == GAP:
        for c in present:
            weight[c] = 1.0 / (len(present) * counts[c])
    total = 0.0
    coupled = 0.0
    for q in range(len(dist)):
        c = level[q]
        if c < 0:
            continue
        c = c & (FLOORED - 1)
        d = dist[q] / unit
        above = max(d - hi[c], 0.0)
        below = max(lo[c] - d, 0.0)
        total += weight[c] * (above * above + below * below)
        coupled += 2.0 * weight[c] * (above - below) * d
    shift = coupled / p if target == GAP else 0.0
    for q in range(len(dist)):
        c = level[q]
        valid = c >= 0
        c = c & (FLOORED - 1) if valid else 0
        d = dist[q]
        above = max(d / unit - hi[c], 0.0) if valid else 0.0
        below = max(lo[c] - d / unit, 0.0) if valid else 0.0
        g = (2.0 * weight[c] * (above - below) - shift) / unit if valid else 0.0
        if kind == COSINE:
            dist[q] = g
        else:
            dist[q] = g / d if level[q] < FLOORED else 0.0
    return total


@numba.njit(cache=True)
def _through_normalisation(grad: np.ndarray, cols: np.ndarray, norms: np.ndarray, denom: np.ndarray) -> None:
    """Back through u = x / max(|x|, eps): project out the radial part where |x| >= eps."""
    n, dim = grad.shape
    for i in range(n):
        radial = 0.0
        for k in range(dim):
            radial += grad[i, k] * cols[k, i]
        if norms[i] < EPS_NORM:
            radial = 0.0
        for k in range(dim):
            grad[i, k] = (grad[i, k] - radial * cols[k, i]) / denom[i]


@numba.njit(cache=True)
def _kernel(
    x: np.ndarray,
    labels: np.ndarray,
    kind: int,
    want_grad: bool,
    dist_buffer: np.ndarray,
    level_buffer: np.ndarray,
    buckets: int,
    target: int,
    margin: float,
):
    """(loss, gradient wrt x) of one batch; the steps are the module docstring's passes."""
    cols, norms, denom, squares = _columns(x, kind)
    group, table, sizes = _label_groups(labels)
    counts = _pairs_per_level(table, sizes, labels.shape[1])
    grad = np.zeros(x.shape)
    if counts.sum() == 0:
        return 0.0, grad
    n_all, low, high, decided_sum, finite = _pair_distances(
        cols, squares, group, table, kind, dist_buffer, level_buffer
    )
    if not finite:  # NaN or Inf embeddings, or overflow: no order, and the buckets would be undefined
        return np.nan, grad
    dist, level = dist_buffer[:n_all], level_buffer[:n_all]
    lo, hi, unit = _bounds(dist, level, counts, buckets, low, high, decided_sum, target, margin)
    total = _loss_and_weights(dist, level, counts, lo, hi, unit, target, kind)
    if want_grad:
        _scatter(cols, dist, kind, grad)
        if kind == COSINE:
            _through_normalisation(grad, cols, norms, denom)
    return total, grad


@numba.njit(cache=True, fastmath={"reassoc"})
def _scatter(cols: np.ndarray, weight: np.ndarray, kind: int, grad: np.ndarray) -> None:
    """grad (N, D) += the gradient of sum_p w_p d_p's inner part: for cosine, d loss / d u_i =
    -sum_j w_ij u_j; for euclidean, sum_j w_ij (x_i - x_j). Sums reassociated: they vectorise."""
    dim, n = cols.shape
    start = 0
    for i in range(n - 1):
        m = n - i - 1
        w = weight[start : start + m]
        for k in range(dim):
            ci, ck = cols[k, i], cols[k, i + 1 :]
            acc = 0.0
            if kind == COSINE:
                for t in range(m):
                    acc -= w[t] * ck[t]
                    grad[i + 1 + t, k] -= w[t] * ci
            else:
                for t in range(m):
                    step = w[t] * (ci - ck[t])
                    acc += step
                    grad[i + 1 + t, k] -= step
            grad[i, k] += acc
        start += m
