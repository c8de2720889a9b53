"""The embedding model: linear layers (the paper: one, 128 -> 3) and L2 normalisation."""

from __future__ import annotations

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
