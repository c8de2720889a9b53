"""The embedding model: linear layers (the paper: one, 128 -> 3) and L2 normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Embedder(torch.nn.Module):
    """Maps input features to unit-norm embeddings; `hidden` adds ReLU layers in between."""

    def __init__(self, in_dim: int, out_dim: int = 3, hidden: tuple[int, ...] = ()) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        layers: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if k:
                layers.append(torch.nn.ReLU())
            layers.append(torch.nn.Linear(a, b))
        self.net = torch.nn.Sequential(*layers)
        self.config = {"in_dim": in_dim, "out_dim": out_dim, "hidden": list(hidden)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def embedding_size(leaves: int, in_dim: int) -> int:
    """The embedding size `out_dim: auto` gives a taxonomy with `leaves` fine classes.

    Half the next power of two at or above the number of leaves, at least 8, at most 64 and never
    more than the input: 9-16 leaves -> 8, 17-32 -> 16, 33-64 -> 32, more -> 64. The paper's 3-d
    sphere holds its 9 scenes but crowds 30 or more fine classes (config/README.md, "Embedding
    size"); the paper's configs keep out_dim: 3.
    """
    if leaves < 1 or in_dim < 1:
        raise ValueError(f"need at least one leaf and one input dimension, got {leaves} and {in_dim}")
    size = 1 << max(0, math.ceil(math.log2(leaves)) - 1)
    return min(in_dim, max(8, min(64, size)))
