"""Embedding quality per taxonomy level: silhouette (cosine, the paper's metric).

Computed in torch in row chunks, so memory grows with chunk x classes rather than N x N.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def silhouette_samples_cosine(x: torch.Tensor, labels: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Per-sample silhouette with cosine distance; samples alone in their class score 0 (as scikit-learn)."""
    classes, y = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(y, len(classes)).to(x.dtype)
    counts = onehot.sum(dim=0)
    unit = F.normalize(x, dim=1)
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for k in range(0, len(x), chunk):
        rows = slice(k, k + chunk)
        dist = (1.0 - unit[rows] @ unit.T).clamp_min(0.0)
        local = torch.arange(dist.shape[0], device=x.device)
        dist[local, local + k] = 0.0
        sums = dist @ onehot
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
        return math.nan, f"{n_classes} classes among {len(labels)} examples; silhouette needs fewer classes than examples"
    return float(silhouette_samples_cosine(x, labels).mean()), ""


def silhouette_per_level(x: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, str]]:
    """Silhouette at every taxonomy level (columns of labels, coarsest first)."""
    return [silhouette(x, labels[:, level]) for level in range(labels.shape[1])]


def mean_silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Average over levels of the defined silhouettes (the early-stopping criterion)."""
    values = [v for v, _ in silhouette_per_level(x, labels) if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan
