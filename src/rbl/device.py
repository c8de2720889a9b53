"""Which torch device a stage runs on; kept apart from training so extraction does not import it."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
