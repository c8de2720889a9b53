"""One experiment's training settings, as the config's `experiments:` block gives them.

Kept free of heavy imports so the command line can build its options without loading torch.
The defaults equal those of the config schema (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rbl.sampling import SAMPLERS


def _setting(default, help: str, choices: tuple | None = None):
    """A settings field with the help text (and choices) of its `rbl train` flag and its config key."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainSettings:
    """One experiment's training settings (from the config's `experiments:` block).

    Each field is one `rbl train` flag (rbl.stages.options.add_settings) and one config key of the
    experiment (workflow/rules/common.smk, train_flags): its metadata gives the flag's help text.
    """

    loss: str = _setting("rank", "rank (RbL), quadruplet or triplet; none: InitEmb (nothing trained)")
    hierarchy: str = _setting(
        "taxonomy", "taxonomy; random: train on fine classes shuffled across parents (the control)"
    )
    target: str = _setting(
        "gap",
        "RbL's targets: gap (blocks of ranks at least --gap apart), edge, or reference (the authors' published loss)",
    )
    distance: str = _setting("cosine", "distance between embeddings: cosine or euclidean")
    sampler: str = _setting("balanced", "balanced (pairs of every rank in each batch) or random batches", SAMPLERS)
    optimizer: str = _setting("sgd", "sgd, adam or adamw")
    lr: float = _setting(1e-3, "learning rate")
    momentum: float = _setting(0.0, "SGD momentum")
    weight_decay: float = _setting(0.0, "weight decay of the optimizer")
    batch_size: int = _setting(12, "clips per batch")
    max_epochs: int = _setting(200, "most epochs trained")
    patience: int = _setting(20, "stop after this many epochs without a better validation silhouette")
    margin: float = _setting(0.2, "triplet margin; quadruplet margin at every level unless --margins is given")
    gap: float = _setting(
        0.6, "RbL with target gap: the gap between consecutive rank blocks, in mean pair distances of the batch"
    )
    margins: tuple[float, ...] = _setting((), "quadruplet margins, one per level (none: --margin at every level)")
    # "auto": rbl.model.embedding_size of the taxonomy's leaves
    out_dim: int | str = _setting("auto", "embedding size, or auto: by the number of leaves")
    # one ReLU layer; () is the paper's single linear layer
    hidden: tuple[int, ...] = _setting(
        (256,), "sizes of the hidden ReLU layers (none: the paper's single linear layer)"
    )
