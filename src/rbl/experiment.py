"""One experiment's training settings, as the config's `experiments:` block gives them.

Kept free of heavy imports so the command line can build its options without loading torch.
The defaults equal those of the config schema (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    """One experiment's training settings (from the config's `experiments:` block)."""

    loss: str = "rank"
    hierarchy: str = "taxonomy"
    target: str = "gap"
    distance: str = "cosine"
    sampler: str = "balanced"
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 12
    max_epochs: int = 200
    patience: int = 20
    margin: float = 0.2
    gap: float = 0.6
    margins: tuple[float, ...] = ()
    out_dim: int | str = "auto"  # "auto": rbl.model.embedding_size of the taxonomy's leaves
    hidden: tuple[int, ...] = (256,)  # one ReLU layer; () is the paper's single linear layer
