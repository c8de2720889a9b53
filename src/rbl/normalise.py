"""Z-scoring with statistics of the training split only (no information from val or test)."""

from __future__ import annotations

import numpy as np


def fit(x_train: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation; constant dimensions get std 1."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    return mean, np.where(std > eps, std, 1.0)


def apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)
