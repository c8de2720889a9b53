"""All metrics of one embedding run, per split and taxonomy level, as one long table.

k for kNN is chosen on the validation split only (per level, best accuracy, ties to the smaller k)
and reused unchanged for the test splits, so no test label ever shapes a reported number.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from rbl.data import EVAL_SPLITS, UNSEEN
from rbl.metrics import (
    CHUNK_ELEMS,
    K_CANDIDATES,
    MAX_PAIRS,
    Score,
    choose_k,
    class_paths,
    knn_accuracy,
    knn_accuracy_loo,
    knn_vote,
    map_at_r,
    mistake_severity,
    neighbour_labels_per_level,
    parent_accuracy,
    silhouette,
    tree_distance_spearman,
)

COLUMNS = ["split", "level", "metric", "value", "k", "n", "reason"]
ALL_LEVELS = "all"  # level name of metrics over the whole tree (spearman)


def _row(split: str, level: str, metric: str, score: Score, k: int | None = None) -> dict:
    return {
        "split": split,
        "level": level,
        "metric": metric,
        "value": float(score.value),
        "k": math.nan if k is None else float(k),
        "n": int(score.n),
        "reason": score.reason,
    }


def _neighbours(
    x: torch.Tensor, y: torch.Tensor, query: np.ndarray, ref: np.ndarray, k: int, chunk_elems: int
) -> list[torch.Tensor]:
    """Per level, the class codes of the k nearest `ref` rows of every `query` row (self excluded)."""
    q, r = torch.from_numpy(query), torch.from_numpy(ref)
    exclude = None
    if (query & ref).any():  # a query may sit in the reference set (train vs train, or within a split)
        position = torch.cumsum(r.long(), 0) - 1
        exclude = torch.where(r[q], position[q], -1)
    return neighbour_labels_per_level(x[q], x[r], y[r], k, exclude, chunk_elems)


def _knn(
    true: torch.Tensor,
    near: torch.Tensor,
    choice: tuple[int | None, dict, str],
    ref_labels: torch.Tensor | None,
    tuning: str,
) -> tuple[Score, int | None, torch.Tensor | None]:
    """kNN accuracy with the k chosen on the tuning split (capped by the neighbours available), the k
    used and, against a reference (`ref_labels` given), the predicted class of every row."""
    k, _, why = choice
    if k is None:
        return Score(math.nan, f"k not chosen on {tuning}: {why}", 0), None, None
    k = min(k, near.shape[1])
    if k == 0:
        return Score(math.nan, "no neighbour available: the set has fewer than 2 labelled examples", 0), None, None
    if ref_labels is None:
        return knn_accuracy_loo(true, near, k), k, None
    return knn_accuracy(true, near, k, ref_labels), k, knn_vote(near[:, :k])


def evaluate_embeddings(
    emb: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    levels: list[str],
    k_candidates: tuple[int, ...] = K_CANDIDATES,
    seed: int = 0,
    *,
    splits: tuple[str, ...] = EVAL_SPLITS,
    reference: str = "train",
    tuning: str = "val",
    unseen: str = UNSEEN,
    max_pairs: int = MAX_PAIRS,
    chunk_elems: int = CHUNK_ELEMS,
) -> pd.DataFrame:
    """Long table (split, level, metric, value, k, n, reason) of every metric for every split in `splits`.

    Per level: silhouette, knn_acc (neighbours from `reference`), knn_acc_loo (within the split, self
    excluded), map_at_r. At the finest level: mistake_severity of knn_acc's predictions. Over the tree
    (level 'all'): spearman. For `unseen`: parent_acc at the lowest parent level seen in training.
    `seed` drives only the pair sampling of spearman. NaN values carry a reason.
    """
    x = torch.as_tensor(np.asarray(emb))
    if not torch.is_floating_point(x):
        x = x.float()
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    split = np.asarray(split).astype(str)
    if y.ndim != 2 or y.shape[1] != len(levels) or len(x) != len(y) or len(split) != len(y):
        raise ValueError(
            f"shapes disagree: emb {tuple(x.shape)}, labels {tuple(y.shape)}, split {split.shape}, "
            f"{len(levels)} level name(s)"
        )
    depth, k_max = len(levels), max(k_candidates)
    ref, tune = split == reference, split == tuning
    y_ref = y[torch.from_numpy(ref)]

    # k per level, from the tuning split alone: against the reference, and leave-one-out within it.
    tune_ref = _neighbours(x, y, tune, ref, k_max, chunk_elems)
    tune_loo = _neighbours(x, y, tune, tune, k_max, chunk_elems)
    y_tune = y[torch.from_numpy(tune)]
    k_ref = [choose_k(y_tune[:, l], tune_ref[l], k_candidates, y_ref[:, l]) for l in range(depth)]
    k_loo = [choose_k(y_tune[:, l], tune_loo[l], k_candidates) for l in range(depth)]

    rows = []
    for name in splits:
        mask = split == name
        near_ref = tune_ref if name == tuning else _neighbours(x, y, mask, ref, k_max, chunk_elems)
        near_loo = tune_loo if name == tuning else _neighbours(x, y, mask, mask, k_max, chunk_elems)
        rows += _split_rows(
            name,
            levels,
            x[torch.from_numpy(mask)],
            y[torch.from_numpy(mask)],
            y_ref,
            (near_ref, k_ref),
            (near_loo, k_loo),
            tuning,
            name == unseen,
            max_pairs,
            seed,
            chunk_elems,
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _split_rows(
    name: str,
    levels: list[str],
    xs: torch.Tensor,
    ys: torch.Tensor,
    y_ref: torch.Tensor,
    against_ref: tuple,
    within: tuple,
    tuning: str,
    unseen: bool,
    max_pairs: int,
    seed: int,
    chunk_elems: int,
) -> list[dict]:
    """Every metric's row for one split: per level, then the finest level's mistake severity, the
    tree's spearman and (unseen split) parent_acc. `against_ref` and `within` are each (neighbours
    per level, k per level) for kNN against the reference split and leave-one-out within this one."""
    (near_ref, k_ref), (near_loo, k_loo) = against_ref, within
    depth, finest = len(levels), len(levels) - 1
    rows = []
    predicted = torch.full_like(ys, -1)
    k_pred: list[int | None] = [None] * depth
    for l, level in enumerate(levels):
        value, reason = silhouette(xs, ys[:, l])
        rows.append(_row(name, level, "silhouette", Score(value, reason, int((ys[:, l] >= 0).sum()))))
        score, k, pred = _knn(ys[:, l], near_ref[l], k_ref[l], y_ref[:, l], tuning)
        rows.append(_row(name, level, "knn_acc", score, k))
        if pred is not None:
            predicted[:, l], k_pred[l] = pred, k
        if l == finest:
            knn_reason = score.reason
        score, k, _ = _knn(ys[:, l], near_loo[l], k_loo[l], None, tuning)
        rows.append(_row(name, level, "knn_acc_loo", score, k))
        rows.append(_row(name, level, "map_at_r", map_at_r(xs, ys[:, l], chunk_elems)))

    if k_pred[finest] is None:
        severity = Score(math.nan, f"no kNN prediction at the finest level: {knn_reason}", 0)
    else:
        severity = mistake_severity(ys, class_paths(predicted[:, finest], y_ref, finest))
    rows.append(_row(name, levels[finest], "mistake_severity", severity, k_pred[finest]))
    rows.append(_row(name, ALL_LEVELS, "spearman", tree_distance_spearman(xs, ys, max_pairs, seed, chunk_elems)))
    if unseen:
        rows.append(_parent_row(name, levels, ys, predicted, y_ref, k_pred))
    return rows


def _parent_row(
    name: str, levels: list[str], ys: torch.Tensor, predicted: torch.Tensor, y_ref: torch.Tensor, ks: list[int | None]
) -> dict:
    """parent_acc; its level is the parent level used ('a+b' if examples differ in their lowest seen parent)."""
    score, used = parent_accuracy(ys, predicted, y_ref)
    level = "+".join(levels[l] for l in used) or (levels[-2] if len(levels) > 1 else levels[0])
    missing = [levels[l] for l in used if ks[l] is None]
    if missing:
        score = Score(math.nan, f"no kNN prediction at level(s) {missing} (see knn_acc)", score.n)
    k = ks[used[0]] if len(used) == 1 else None
    return _row(name, level, "parent_acc", score, k)
