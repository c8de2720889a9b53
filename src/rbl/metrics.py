"""Embedding quality per taxonomy level: silhouette, kNN accuracy, mAP@R, mistake severity, rank correlation.

Distances are cosine throughout (as the paper). Everything pairwise runs in torch over chunks of
query rows, so memory grows with chunk x N (about `chunk_elems` similarities at a time), never N x N:
scikit-learn's kNN and silhouette would build blocks of the full distance matrix and sort whole rows,
and mAP@R and pair correlations have no scikit-learn implementation that scales.

Labels are one column of class codes (or an (N, L) matrix, coarsest first) with -1 where unknown;
unknown labels are left out. An undefined metric gives NaN with a human-readable reason, never a
made-up number.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

K_CANDIDATES = (1, 3, 5, 7, 9, 11, 13, 15)
# Pair cap for the tree/embedding rank correlation: above it, pairs are drawn uniformly with a seeded
# generator (sampling error of the correlation ~ 1/sqrt(2e6) < 1e-3; exact below the cap).
MAX_PAIRS = 2_000_000
# Similarities held at once per chunk (float32: 16 MiB; mAP@R's sort keeps ~10x that at worst).
CHUNK_ELEMS = 1 << 22


class Score(NamedTuple):
    """A metric value, why it is NaN ('' when defined) and how many items it averages."""

    value: float
    reason: str
    n: int


def _rows_per_chunk(width: int, chunk_elems: int) -> int:
    return max(1, chunk_elems // max(1, width))


# --- silhouette ------------------------------------------------------------------------------


def silhouette_samples_cosine(x: torch.Tensor, labels: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Per-sample silhouette with cosine distance; samples alone in their class score 0 (as scikit-learn).

    `chunk` rows at a time (default: about CHUNK_ELEMS distances per chunk, whatever N).
    """
    classes, y = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(y, len(classes)).to(x.dtype)
    counts = onehot.sum(dim=0)
    unit = F.normalize(x, dim=1)
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    chunk = chunk or _rows_per_chunk(len(x), CHUNK_ELEMS)
    for k in range(0, len(x), chunk):
        rows = slice(k, k + chunk)
        dist = (unit[rows] @ unit.T).neg_().add_(1.0).clamp_min_(0.0)  # in place: one chunk-sized buffer
        local = torch.arange(dist.shape[0], device=x.device)
        dist[local, local + k] = 0.0
        sums = dist @ onehot
        del dist
        own = y[rows]
        own_count = counts[own]
        a = sums.gather(1, own[:, None]).squeeze(1) / (own_count - 1).clamp_min(1)
        mean_other = sums / counts
        mean_other.scatter_(1, own[:, None], math.inf)
        b = mean_other.min(dim=1).values
        s = (b - a) / torch.maximum(a, b)
        out[rows] = torch.where(own_count > 1, torch.nan_to_num(s, nan=0.0), torch.zeros_like(s))
    return out


def silhouette(x: torch.Tensor, labels: torch.Tensor) -> tuple[float, str]:
    """Mean cosine silhouette of the examples whose label is known (>= 0): (value, reason if undefined)."""
    known = labels >= 0
    x, labels = x[known], labels[known]
    n_classes = int(torch.unique(labels).numel())
    if n_classes < 2:
        return math.nan, f"{n_classes} class(es) among {len(labels)} example(s); silhouette needs at least 2"
    if n_classes > len(labels) - 1:
        return (
            math.nan,
            f"{n_classes} classes among {len(labels)} examples; silhouette needs fewer classes than examples",
        )
    return float(silhouette_samples_cosine(x, labels).mean()), ""


def silhouette_per_level(x: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, str]]:
    """Silhouette at every taxonomy level (columns of labels, coarsest first)."""
    return [silhouette(x, labels[:, level]) for level in range(labels.shape[1])]


def mean_silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Average over levels of the defined silhouettes (the early-stopping criterion)."""
    values = [v for v, _ in silhouette_per_level(x, labels) if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


# --- nearest neighbours and kNN accuracy -----------------------------------------------------


def nearest_neighbours(
    query: torch.Tensor, ref: torch.Tensor, k: int, exclude: torch.Tensor | None = None, chunk_elems: int = CHUNK_ELEMS
) -> torch.Tensor:
    """(Nq, k') indices into `ref` of each query's nearest rows by cosine distance, nearest first.

    `exclude` (Nq,) names one ref row per query to skip (-1: none), e.g. the query itself for
    leave-one-out. k' = min(k, rows available). Ties in distance are ordered arbitrarily.
    """
    q, r = F.normalize(query, dim=1), F.normalize(ref, dim=1)
    width = max(0, min(k, len(r) - (1 if exclude is not None else 0)))
    out = torch.empty((len(q), width), dtype=torch.long)
    if width == 0 or len(q) == 0:
        return out
    rows = _rows_per_chunk(len(r), chunk_elems)
    for start in range(0, len(q), rows):
        sim = q[start : start + rows] @ r.T
        if exclude is not None:
            ex = exclude[start : start + rows]
            hit = torch.nonzero(ex >= 0).squeeze(1)
            sim[hit, ex[hit]] = -math.inf
        out[start : start + rows] = sim.topk(width, dim=1).indices
    return out


def neighbour_labels_per_level(
    query: torch.Tensor,
    ref: torch.Tensor,
    ref_labels: torch.Tensor,
    k: int,
    exclude: torch.Tensor | None = None,
    chunk_elems: int = CHUNK_ELEMS,
) -> list[torch.Tensor]:
    """Per level, the (Nq, k') class codes of each query's nearest ref rows among those labelled at that level.

    `exclude` (Nq,) indexes into the full `ref`. Levels whose labelled ref rows coincide share one
    neighbour search (the usual case: complete labels), so L levels cost one search, not L.
    """
    searched: dict[bytes, torch.Tensor] = {}
    out = []
    for level in range(ref_labels.shape[1]):
        known = ref_labels[:, level] >= 0
        key = known.numpy().tobytes()
        if key not in searched:
            local = None
            if exclude is not None:
                position = torch.cumsum(known.long(), 0) - 1
                safe = exclude.clamp_min(0)
                local = torch.where((exclude >= 0) & known[safe], position[safe], -1)
            searched[key] = nearest_neighbours(query, ref[known], k, local, chunk_elems)
        out.append(ref_labels[known, level][searched[key]])
    return out


def knn_vote(neighbour_labels: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Majority class of each row (neighbours nearest first); a tie goes to the tied class met first,
    i.e. the one whose nearest member is closest (the nearest neighbour's class when it is tied)."""
    n, k = neighbour_labels.shape
    if k == 0:
        raise ValueError("knn_vote needs at least one neighbour per row")
    order = torch.arange(k)
    out = torch.empty(n, dtype=neighbour_labels.dtype)
    for start in range(0, n, chunk):
        nl = neighbour_labels[start : start + chunk]
        counts = (nl[:, :, None] == nl[:, None, :]).sum(dim=2)
        # Count dominates (it moves in steps of k + 1); among equal counts the earliest position wins.
        best = (counts * (k + 1) - order).argmax(dim=1, keepdim=True)
        out[start : start + chunk] = nl.gather(1, best).squeeze(1)
    return out


def knn_accuracy(true: torch.Tensor, neighbour_labels: torch.Tensor, k: int, ref_labels: torch.Tensor) -> Score:
    """kNN accuracy of queries against a reference set, from their neighbours' classes (nearest first).

    Undefined when no query is labelled, when the reference holds fewer than 2 classes (accuracy would
    be trivial) or when no query class occurs in the reference (every vote is wrong by construction).
    """
    known = true >= 0
    n = int(known.sum())
    ref_classes = torch.unique(ref_labels[ref_labels >= 0])
    if n == 0:
        return Score(math.nan, "no labelled example to classify", 0)
    if len(ref_classes) < 2:
        return Score(
            math.nan, f"the reference set holds {len(ref_classes)} class(es); kNN accuracy needs at least 2", n
        )
    if not torch.isin(true[known], ref_classes).any():
        return Score(
            math.nan,
            f"none of the {len(torch.unique(true[known]))} class(es) occur in the reference set, "
            "so every vote is wrong by construction (0 by design)",
            n,
        )
    pred = knn_vote(neighbour_labels[known, :k])
    return Score(float((pred == true[known]).double().mean()), "", n)


def knn_accuracy_loo(true: torch.Tensor, neighbour_labels: torch.Tensor, k: int) -> Score:
    """Leave-one-out kNN accuracy within one set, from neighbours found without each query itself.

    Queries whose class has no other member cannot be right and are left out (as mAP@R's R = 0);
    they still serve as neighbours. Undefined with fewer than 2 classes or no class of 2+ members.
    """
    known = true >= 0
    y = true[known]
    classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        return Score(
            math.nan, f"{len(classes)} class(es) among {len(y)} example(s); leave-one-out kNN needs at least 2", 0
        )
    scored = counts[inverse] > 1
    n = int(scored.sum())
    if n == 0:
        return Score(
            math.nan, f"each of the {len(classes)} classes has a single example; leave-one-out kNN needs 2+", 0
        )
    pred = knn_vote(neighbour_labels[known][scored, :k])
    return Score(float((pred == y[scored]).double().mean()), "", n)


def choose_k(
    true: torch.Tensor,
    neighbour_labels: torch.Tensor,
    candidates: tuple[int, ...] = K_CANDIDATES,
    ref_labels: torch.Tensor | None = None,
) -> tuple[int | None, dict[int, float], str]:
    """The candidate k of best accuracy on these (validation) queries; ties go to the smaller k.

    Candidates beyond the neighbours available (the reference size) are dropped. `ref_labels` None
    scores leave-one-out accuracy. Returns (k or None, accuracy per candidate, reason when None).
    """
    usable = sorted(k for k in set(candidates) if 1 <= k <= neighbour_labels.shape[1])
    if not (true >= 0).any():
        return None, {}, "no labelled example to choose k on"
    if not usable:
        return (
            None,
            {},
            f"no candidate k in {sorted(candidates)} fits the {neighbour_labels.shape[1]} neighbour(s) available",
        )
    scores = {}
    for k in usable:
        score = (
            knn_accuracy_loo(true, neighbour_labels, k)
            if ref_labels is None
            else knn_accuracy(true, neighbour_labels, k, ref_labels)
        )
        if math.isnan(score.value):
            return None, {}, score.reason
        scores[k] = score.value
    return max(usable, key=lambda k: (scores[k], -k)), scores, ""


# --- mAP@R -----------------------------------------------------------------------------------


def map_at_r(x: torch.Tensor, labels: torch.Tensor, chunk_elems: int = CHUNK_ELEMS) -> Score:
    """Mean average precision at R (Musgrave et al. 2020), leave-one-out within the set.

    For a query with R other examples of its class, rank the others by cosine distance and average
    precision@i over the positions i <= R holding a same-class example, divided by R. Queries with
    R = 0 are left out. Ties in distance are ordered arbitrarily.
    """
    known = labels >= 0
    x, y = x[known], labels[known]
    classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        return Score(
            math.nan,
            f"{len(classes)} class(es) among {len(y)} example(s); mAP@R needs at least 2 "
            "(with one class every retrieval is right)",
            0,
        )
    r = counts[inverse] - 1
    queries = torch.nonzero(r > 0).squeeze(1)
    if len(queries) == 0:
        return Score(math.nan, f"each of the {len(classes)} classes has a single example; mAP@R needs R >= 1", 0)
    # Queries of similar R share a chunk, so the top-R width stays close to what each needs.
    queries = queries[torch.argsort(r[queries], stable=True)]
    unit = F.normalize(x, dim=1)
    rows = _rows_per_chunk(len(y), chunk_elems)
    total = 0.0
    for start in range(0, len(queries), rows):
        q = queries[start : start + rows]
        rq = r[q]
        width = int(rq.max())
        sim = unit[q] @ unit.T
        sim[torch.arange(len(q)), q] = -math.inf
        top = sim.topk(width, dim=1).indices
        del sim
        position = torch.arange(1, width + 1)
        relevant = (y[top] == y[q][:, None]) & (position[None, :] <= rq[:, None])
        precision = relevant.cumsum(dim=1).double() / position
        total += float(((precision * relevant).sum(dim=1) / rq).sum())
    return Score(total / len(queries), "", len(queries))


# --- tree distances: mistake severity and rank correlation -----------------------------------


def paired_tree_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tree distance of row i of `a` with row i of `b` (rbl.taxonomy.tree_distance's rule, per pair
    instead of all pairs, so N pairs cost N, not N x N): 0 same leaf ... 2L different roots, -1 undecided."""
    depth = a.shape[1]
    known = (a >= 0) & (b >= 0)
    differ = known & (a != b)
    first_diff = differ.to(torch.uint8).argmax(dim=1)
    same = torch.where(known.all(dim=1), 0, -1)
    return torch.where(differ.any(dim=1), 2 * (depth - first_diff), same)


def class_paths(codes: torch.Tensor, labels: torch.Tensor, level: int) -> torch.Tensor:
    """(N, L) label path of each class code at `level`, read off any row of `labels` holding it
    (codes name a node by its path, so all such rows agree up to `level`); finer levels -1, unknown codes all -1."""
    out = torch.full((len(codes), labels.shape[1]), -1, dtype=labels.dtype)
    has = labels[:, level] >= 0
    if not has.any():
        return out
    table = torch.full((int(labels[has, level].max()) + 1, labels.shape[1]), -1, dtype=labels.dtype)
    table[labels[has, level]] = labels[has]
    table[:, level + 1 :] = -1
    ok = (codes >= 0) & (codes < len(table))
    out[ok] = table[codes[ok]]
    return out


def mistake_severity(true_paths: torch.Tensor, predicted_paths: torch.Tensor) -> Score:
    """Mean tree distance between true and predicted label paths over the wrong predictions at the
    finest level (rows whose finest true label is unknown are left out). Lower is better: 2 means the
    wrong class still has the right parent."""
    known = true_paths[:, -1] >= 0
    wrong = known & (predicted_paths[:, -1] != true_paths[:, -1])
    n = int(wrong.sum())
    if int(known.sum()) == 0:
        return Score(math.nan, "no example is labelled at the finest level", 0)
    if n == 0:
        return Score(math.nan, f"no wrong prediction among {int(known.sum())}; severity is defined over mistakes", 0)
    distance = paired_tree_distance(true_paths[wrong], predicted_paths[wrong])
    return Score(float(distance.double().mean()), "", n)


def tree_distance_spearman(
    x: torch.Tensor, labels: torch.Tensor, max_pairs: int = MAX_PAIRS, seed: int = 0, chunk_elems: int = CHUNK_ELEMS
) -> Score:
    """Spearman correlation between tree distance and cosine embedding distance over decided pairs.

    Exact over all pairs i < j when there are at most `max_pairs`; otherwise over `max_pairs` pairs
    drawn uniformly (with replacement) by a generator seeded with `seed`, so memory stays linear.
    """
    n = len(x)
    n_pairs = n * (n - 1) // 2
    if n_pairs == 0:
        return Score(math.nan, f"{n} example(s); the correlation needs pairs", n)
    if n_pairs <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = j + (j >= i)  # uniform over j != i
        i, j = torch.from_numpy(i), torch.from_numpy(j)
    tree = paired_tree_distance(labels[i], labels[j])
    decided = tree >= 0
    i, j, tree = i[decided], j[decided], tree[decided]
    if len(tree) < 2 or int(torch.unique(tree).numel()) < 2:
        values = torch.unique(tree).tolist()
        return Score(
            math.nan,
            f"{len(tree)} decided pair(s) with tree distance(s) {values}; "
            "the correlation needs at least 2 distinct distances",
            n,
        )
    unit = F.normalize(x, dim=1)
    dist = torch.empty(len(i), dtype=x.dtype)
    rows = _rows_per_chunk(x.shape[1], chunk_elems)
    for start in range(0, len(i), rows):
        s = slice(start, start + rows)
        dist[s] = 1.0 - (unit[i[s]] * unit[j[s]]).sum(dim=1)
    if float(dist.max() - dist.min()) == 0.0:
        return Score(math.nan, "every pair has the same embedding distance", n)
    return Score(float(spearmanr(tree.numpy(), dist.numpy()).statistic), "", n)


# --- unseen classes: accuracy at the lowest parent seen in training --------------------------


def lowest_seen_parent(query_labels: torch.Tensor, ref_labels: torch.Tensor) -> torch.Tensor:
    """(N,) the finest level above the finest at which each query's class occurs in the reference, -1 if none."""
    out = torch.full((len(query_labels),), -1, dtype=torch.long)
    for level in range(query_labels.shape[1] - 1):
        seen = torch.isin(query_labels[:, level], torch.unique(ref_labels[ref_labels[:, level] >= 0, level]))
        out[seen & (query_labels[:, level] >= 0)] = level
    return out


def parent_accuracy(
    query_labels: torch.Tensor, predicted: torch.Tensor, ref_labels: torch.Tensor
) -> tuple[Score, list[int]]:
    """Accuracy of each query at its lowest parent level seen in training (for unseen fine classes).

    `predicted` (N, L) holds kNN-predicted codes per level. Returns the score and the levels used.
    """
    if query_labels.shape[1] < 2:
        return Score(math.nan, "the taxonomy has one level; there is no parent level", 0), []
    level = lowest_seen_parent(query_labels, ref_labels)
    scored = torch.nonzero(level >= 0).squeeze(1)
    if len(scored) == 0:
        return Score(math.nan, "no example has a parent class seen in training", 0), []
    correct = predicted[scored, level[scored]] == query_labels[scored, level[scored]]
    return Score(float(correct.double().mean()), "", len(scored)), sorted(set(level[scored].tolist()))
