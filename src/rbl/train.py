"""Training one embedding model: batches drawn on the device, early stopping on validation silhouette."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rbl import losses
from rbl.experiment import TrainSettings
from rbl.losses.distances import pairwise_distance
from rbl.metrics import mean_silhouette
from rbl.model import Embedder
from rbl.sampling import BalancedBatches, random_batches

log = logging.getLogger(__name__)

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SPREAD_SAMPLE = 256  # training clips whose embeddings' spread is tracked


def spread(embeddings: torch.Tensor, distance: str) -> float:
    """Mean pairwise distance of a set of embeddings: near 0 when they collapse onto a point."""
    n = len(embeddings)
    if n < 2:
        return math.nan
    i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    return float(pairwise_distance(embeddings, distance)[i, j].mean())


def make_loss(settings: TrainSettings) -> torch.nn.Module:
    if settings.loss == "rank":
        return losses.RankBasedLoss(target=settings.target, distance=settings.distance, margin=settings.gap)
    if settings.loss == "quadruplet":
        return losses.QuadrupletLoss(margins=settings.margins or settings.margin, distance=settings.distance)
    if settings.loss == "triplet":
        return losses.TripletLoss(margin=settings.margin, distance=settings.distance)
    raise ValueError(f"unknown loss {settings.loss!r}")


def make_optimizer(settings: TrainSettings, parameters) -> torch.optim.Optimizer:
    """The configured optimiser, in its fused (one kernel for all parameters) form where torch has one:
    for the paper's tiny model, Adam's plain per-parameter loop takes 70 us a step on CPU, fused 33."""
    kwargs = {"lr": settings.lr, "weight_decay": settings.weight_decay}
    if settings.optimizer == "sgd":
        kwargs["momentum"] = settings.momentum
    parameters = list(parameters)
    try:
        return OPTIMIZERS[settings.optimizer](parameters, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without the fused kernel
        return OPTIMIZERS[settings.optimizer](parameters, **kwargs)


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        settings: TrainSettings, seed: int, device: torch.device,
        progress: bool = True, collapse_spread: float = 0.0) -> tuple[dict, pd.DataFrame]:
    """Train from a seeded start; return the best checkpoint (by validation mean silhouette) and the history.

    The history holds, per epoch, the mean training loss, the validation mean silhouette and the
    spread (mean pairwise distance) of a fixed sample of training embeddings; a spread below
    `collapse_spread` is logged as a warning, once, since it means the embeddings collapse.
    """
    if not isinstance(settings.out_dim, int):
        raise ValueError(f"out_dim must be a number here, got {settings.out_dim!r}; resolve 'auto' from the "
                         "taxonomy with rbl.model.embedding_size first (as `rbl train` does)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt = torch.as_tensor(x_train, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.long, device=device)
    xv = torch.as_tensor(x_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=torch.long, device=device)
    model = Embedder(xt.shape[1], settings.out_dim, settings.hidden).to(device)
    loss_fn = make_loss(settings)
    optimizer = make_optimizer(settings, model.parameters())
    balanced = BalancedBatches(y_train, settings.batch_size) if settings.sampler == "balanced" else None

    tracked = xt[torch.as_tensor(np.random.default_rng([seed, 2]).permutation(len(xt))[:SPREAD_SAMPLE],
                                 device=device)]
    def evaluate() -> tuple[float, float]:
        """Validation mean silhouette and the tracked training embeddings' spread."""
        model.eval()
        with torch.no_grad():
            return mean_silhouette(model(xv), yv), spread(model(tracked), settings.distance)

    warned = False

    def warn_collapse(epoch: int, width: float) -> bool:
        if width < collapse_spread and not warned:
            log.warning("the training embeddings are collapsing: their spread (mean pairwise %s distance) "
                        "fell to %.4f, below %g, at epoch %d; try target: gap (RbL), a larger out_dim or "
                        "a lower lr", settings.distance, width, collapse_spread, epoch)
            return True
        return warned

    best_score, width = evaluate()
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    rows = [{"epoch": 0, "loss": math.nan, "val_silhouette": best_score, "spread": width}]
    warned = warn_collapse(0, width)
    bar = tqdm(range(1, settings.max_epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        batches = balanced.epoch(rng) if balanced else random_batches(len(xt), settings.batch_size, rng)
        # One transfer per epoch: the batches' indices go to the device together.
        sizes = [len(b) for b in batches]
        indices = torch.as_tensor(np.concatenate(batches), device=device).split(sizes) if batches else ()
        total = torch.zeros((), device=device)
        for index in indices:
            loss = loss_fn(model(xt[index]), yt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        score, width = evaluate()
        rows.append({"epoch": epoch, "loss": float(total) / max(1, len(batches)), "val_silhouette": score,
                     "spread": width})
        warned = warn_collapse(epoch, width)
        if score > best_score or math.isnan(best_score):
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(val_sil=f"{score:.3f}", best=f"{best_score:.3f}@{best_epoch}", spread=f"{width:.3f}")
        if epoch - best_epoch >= settings.patience:
            break
    checkpoint = {"state_dict": best_state, "model": model.config, "epoch": best_epoch,
                  "val_silhouette": best_score, "spread": rows[best_epoch]["spread"], "seed": seed}
    return checkpoint, pd.DataFrame(rows)


def load_model(checkpoint: dict, device: torch.device) -> Embedder:
    cfg = checkpoint["model"]
    model = Embedder(cfg["in_dim"], cfg["out_dim"], tuple(cfg["hidden"])).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
