"""Z-scoring with statistics of the training split only (no information from val or test).

A dimension that is constant over the training clips (e.g. a band that every clip, or an all-silent
dataset, leaves at the log floor) has no spread to divide by: it gets std 1, so it becomes 0 after
centring instead of NaN or float-rounding noise blown up to unit scale.
"""

from __future__ import annotations

import numpy as np


def fit(x_train: np.ndarray, eps: float = 1e-8, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation; (near-)constant dimensions get std 1.

    A dimension counts as constant when its std is at most `eps` or `rtol` times its mean's magnitude
    (float32 features that differ only by rounding).
    """
    x = np.asarray(x_train)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"normalisation needs a non-empty (clips, dims) matrix, got shape {x.shape}")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    constant = (std <= eps) | (std <= rtol * np.abs(mean))
    return mean, np.where(constant, 1.0, std).astype(std.dtype)


def apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)
