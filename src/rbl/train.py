"""Training one embedding model: batches drawn on the device, early stopping on validation silhouette.

A long run survives being killed: every `every` epochs `fit` saves its whole state (model,
optimiser, best model, early-stopping counters, history, random generators) atomically to a
resume file, and a rerun continues from it, bit for bit as if never interrupted (on CPU). The file
records a key of the run it belongs to (the training data, every setting, the seed, device and
threads, the package's code and library versions); a file with another key, or one that cannot
be read, is ignored with a log line and training starts from epoch 0.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rbl import losses
from rbl.atomic import atomic_path
from rbl.codehash import stage_hash
from rbl.experiment import TrainSettings
from rbl.losses.distances import pairwise_distance
from rbl.metrics import mean_silhouette
from rbl.model import Embedder, embedding_size
from rbl.sampling import BalancedBatches, random_batches
from rbl.taxonomy import shuffle_leaves

log = logging.getLogger(__name__)

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SPREAD_SAMPLE = 256  # training clips whose embeddings' spread is tracked
HISTORY = ("epoch", "loss", "val_silhouette", "spread")
RESUME_FORMAT = 1  # bump when the resume file's layout changes: older files are then ignored


def resolve_out_dim(settings: TrainSettings, leaves: int, in_dim: int) -> TrainSettings:
    """The settings with out_dim "auto" replaced by the size for this many leaves (rbl.model.embedding_size)."""
    if settings.out_dim != "auto":
        return settings
    return dataclasses.replace(settings, out_dim=embedding_size(leaves, in_dim))


def training_labels(labels: np.ndarray, leaf_codes: np.ndarray, hierarchy: str, seed: int) -> np.ndarray:
    """The labels a run trains (and early-stops) on: the true ones, or for hierarchy "random" (the
    control) fine classes shuffled across parents, drawn from the run's seed. Evaluation uses the true ones."""
    if hierarchy != "random":
        return labels
    return shuffle_leaves(labels, leaf_codes, np.random.default_rng([seed, 1]))


def code_hash(root: Path | None = None) -> str:
    """Hash of the code `rbl train` runs (rbl.codehash; the package under `root` if given): a code
    change that can reach training makes saved training state stale."""
    return stage_hash("train") if root is None else stage_hash("train", root)


def run_key(arrays: list[np.ndarray], settings: TrainSettings, seed: int, device: torch.device) -> str:
    """sha256 of everything a training run's numbers depend on: its arrays' content, every setting,
    the seed, device and torch threads, the package's code and the versions of torch and numpy."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(
        json.dumps(
            {
                "format": RESUME_FORMAT,
                "settings": dataclasses.asdict(settings),
                "seed": seed,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "code": code_hash(),
            },
            sort_keys=True,
        ).encode()
    )
    return digest.hexdigest()


@dataclass(frozen=True)
class ResumeFile:
    """Where a run keeps its state, and how often (in epochs) it saves it."""

    path: Path
    every: int

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"checkpoint interval must be at least 1 epoch, got {self.every}")

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def load(self, key: str) -> dict | None:
        """The saved state of the run with this key; None (with a log line) when there is none to use."""
        if not self.path.exists():
            return None
        try:
            # On the CPU: generator states must be CPU tensors; weights move to the model's device
            # as they are loaded into it.
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged file of any kind must not stop training
            log.warning(
                "resume state %s is unreadable (%s: %s); ignoring it and training from epoch 0",
                self.path,
                type(err).__name__,
                str(err).strip().splitlines()[0] if str(err).strip() else "",
            )
            return None
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            log.warning(
                "resume state %s is not one this version writes; ignoring it and training from epoch 0", self.path
            )
            return None
        if state.get("key") != key:
            log.info(
                "resume state %s belongs to another run (its data, settings, seed or code differ); "
                "ignoring it and training from epoch 0",
                self.path,
            )
            return None
        return state

    def remove(self) -> None:
        """Delete the state once the run's outputs are written (its data are in them), and the
        temporaries of saves that a kill cut short (rbl.atomic names them `.<name>.*.tmp*`)."""
        self.path.unlink(missing_ok=True)
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp*"):
            tmp.unlink(missing_ok=True)


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
    for the paper's tiny model the per-parameter loop costs twice as much a step (benchmarks/README.md)."""
    kwargs = {"lr": settings.lr, "weight_decay": settings.weight_decay}
    if settings.optimizer == "sgd":
        kwargs["momentum"] = settings.momentum
    parameters = list(parameters)
    try:
        return OPTIMIZERS[settings.optimizer](parameters, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without the fused kernel
        return OPTIMIZERS[settings.optimizer](parameters, **kwargs)


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    seed: int,
    device: torch.device,
    progress: bool = True,
    collapse_spread: float = 0.0,
    resume: ResumeFile | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Train from a seeded start; return the best checkpoint (by validation mean silhouette) and the history.

    The history holds, per epoch, the mean training loss, the validation mean silhouette and the
    spread (mean pairwise distance) of a fixed sample of training embeddings; a spread below
    `collapse_spread` is logged as a warning, once, since it means the embeddings collapse.
    With `resume`, the state is saved there every `resume.every` epochs and a saved state of this
    same run (see run_key) is continued; the caller removes the file once its outputs are written.
    """
    if not isinstance(settings.out_dim, int):
        raise ValueError(
            f"out_dim must be a number here, got {settings.out_dim!r}; resolve 'auto' from the "
            "taxonomy with rbl.model.embedding_size first (as `rbl train` does)"
        )
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

    tracked = xt[torch.as_tensor(np.random.default_rng([seed, 2]).permutation(len(xt))[:SPREAD_SAMPLE], device=device)]

    def evaluate() -> tuple[float, float]:
        """Validation mean silhouette and the tracked training embeddings' spread."""
        model.eval()
        with torch.no_grad():
            return mean_silhouette(model(xv), yv), spread(model(tracked), settings.distance)

    warned = False

    def warn_collapse(epoch: int, width: float) -> bool:
        if width < collapse_spread and not warned:
            log.warning(
                "the training embeddings are collapsing: their spread (mean pairwise %s distance) "
                "fell to %.4f, below %g, at epoch %d; try target: gap (RbL), a larger out_dim or "
                "a lower lr",
                settings.distance,
                width,
                collapse_spread,
                epoch,
            )
            return True
        return warned

    # One row per epoch (epoch, loss, val_silhouette, spread), filled as training goes.
    history = np.full((settings.max_epochs + 1, len(HISTORY)), np.nan)
    key = run_key([x_train, y_train, x_val, y_val], settings, seed, device) if resume else ""
    saved = resume.load(key) if resume else None
    restored = _restore(saved, model, settings, device) if saved else None
    if restored:
        model, optimizer, rng, start = restored["model"], restored["optimizer"], restored["rng"], restored["epoch"]
        best_state, best_epoch, best_score = restored["best_state"], restored["best_epoch"], restored["best_score"]
        warned = restored["warned"]
        history[: start + 1] = restored["history"]
        log.info(
            "resuming from epoch %d (best %.4f at epoch %d) with the saved state in %s",
            start,
            best_score,
            best_epoch,
            resume.path,
        )
    else:
        start = 0
        best_score, width = evaluate()
        best_epoch = 0
        best_state = copy.deepcopy(model.state_dict())
        history[0] = (0, math.nan, best_score, width)
        warned = warn_collapse(0, width)
    epoch = start
    bar = tqdm(
        range(start + 1, settings.max_epochs + 1),
        desc="training",
        unit="epoch",
        disable=not progress,
        initial=start,
        total=settings.max_epochs,
    )
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
        history[epoch] = (epoch, float(total) / max(1, len(batches)), score, width)
        warned = warn_collapse(epoch, width)
        if score > best_score or math.isnan(best_score):
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(val_sil=f"{score:.3f}", best=f"{best_score:.3f}@{best_epoch}", spread=f"{width:.3f}")
        if epoch - best_epoch >= settings.patience:
            break
        if resume and epoch % resume.every == 0 and epoch < settings.max_epochs:
            resume.save(
                {
                    "format": RESUME_FORMAT,
                    "key": key,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_state": best_state,
                    "best_epoch": best_epoch,
                    "best_score": best_score,
                    "warned": warned,
                    "history": torch.from_numpy(history[: epoch + 1].copy()),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": json.dumps(rng.bit_generator.state),
                }
            )
    checkpoint = {
        "state_dict": best_state,
        "model": model.config,
        "epoch": best_epoch,
        "val_silhouette": best_score,
        "spread": float(history[best_epoch, 3]),
        "seed": seed,
    }
    return checkpoint, _history_frame(history[: epoch + 1])


def _history_frame(history: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(history, columns=list(HISTORY))
    return frame.astype({"epoch": np.int64})


def _restore(state: dict, model: Embedder, settings: TrainSettings, device: torch.device) -> dict | None:
    """A saved state rebuilt into fresh objects (model, optimizer, best_state, rng, ...), with torch's
    generator set to the saved one; None (with a warning) if the state does not fit, leaving the
    fresh model, optimiser and generators untouched."""
    try:
        epoch = int(state["epoch"])
        history = state["history"].numpy()
        if not 1 <= epoch < settings.max_epochs or history.shape != (epoch + 1, len(HISTORY)):
            raise ValueError(f"epoch {epoch} with a history of shape {history.shape}")
        restored = copy.deepcopy(model)
        restored.load_state_dict(state["model"])
        optimizer = make_optimizer(settings, restored.parameters())
        optimizer.load_state_dict(state["optimizer"])
        expected = model.state_dict()
        best_state = state["best_state"]
        if best_state.keys() != expected.keys() or any(best_state[k].shape != v.shape for k, v in expected.items()):
            raise ValueError("the best model does not fit this model")
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        out = {
            "model": restored,
            "optimizer": optimizer,
            "rng": rng,
            "epoch": epoch,
            "history": history,
            "best_state": {k: v.to(device) for k, v in best_state.items()},
            "best_epoch": int(state["best_epoch"]),
            "best_score": float(state["best_score"]),
            "warned": bool(state["warned"]),
        }
        torch.set_rng_state(state["torch_rng"])  # last: nothing after it can fail
    except Exception as err:  # noqa: BLE001 - a damaged file of any kind must not stop training
        log.warning(
            "resume state does not fit this run (%s: %s); ignoring it and training from epoch 0",
            type(err).__name__,
            err,
        )
        return None
    return out


def load_model(checkpoint: dict, device: torch.device) -> Embedder:
    cfg = checkpoint["model"]
    model = Embedder(cfg["in_dim"], cfg["out_dim"], tuple(cfg["hidden"])).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
