"""`rbl train`: one embedding model trained with one experiment's settings, early-stopped on validation."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from rbl.atomic import atomic_path
from rbl.errors import InputError
from rbl.experiment import TrainSettings
from rbl.io import load_array, read_labels, read_splits, require_finite, write_csv
from rbl.stages.options import add_settings, finite, positive_int, settings_from

log = logging.getLogger("rbl")

HELP = "train one embedding model, early-stopped on validation"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, help="normalised features of normalise (.npz)")
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--taxonomy", required=True, help="taxonomy CSV of ingest")
    p.add_argument("--splits", required=True, help="splits CSV of the split stage")
    p.add_argument("--out", required=True, help="checkpoint to write (model.pt)")
    p.add_argument("--history", required=True, help="per-epoch history CSV to write (loss, silhouette, spread)")
    p.add_argument("--seed", type=int, required=True, help="the run's seed (initialisation, batches)")
    p.add_argument("--device", required=True, help="cpu, cuda, cuda:<n> or auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--collapse-spread",
        type=finite,
        default=0.0,
        help="warn when the training embeddings' spread (mean pairwise distance) falls below this",
    )
    p.add_argument(
        "--resume",
        default=None,
        help="file for the run's state: saved there periodically, continued from on a rerun of the "
        "same run, removed once the outputs are written (default: none, no saved state)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="with --resume: save the state every this many epochs",
    )
    add_settings(p, TrainSettings)


def run(args: argparse.Namespace) -> None:
    import torch

    from rbl.data import load_taxonomy
    from rbl.device import resolve_device
    from rbl.train import ResumeFile, fit, resolve_out_dim, training_labels

    if args.resume and args.checkpoint_every is None:
        raise InputError(
            "train: --resume needs --checkpoint-every (the epochs between saves of the state; "
            "the workflow passes train.checkpoint_every)"
        )
    torch.set_num_threads(args.threads)
    settings = settings_from(args, TrainSettings)
    manifest, labels, _ = read_labels(args.manifest, args.taxonomy)
    split = read_splits(manifest, args.splits)
    x = load_array(args.features, "x")
    leaves = load_taxonomy(args.taxonomy).leaf_codes()
    if settings.out_dim == "auto":
        settings = resolve_out_dim(settings, len(leaves), x.shape[1])
        log.info("out_dim auto: %d-d embeddings for %d leaves", settings.out_dim, len(leaves))
    labels = training_labels(labels, leaves, settings.hierarchy, args.seed)
    if len(x) != len(manifest):
        raise InputError(f"{args.features}: {len(x)} rows, the manifest {len(manifest)}; rerun normalise")
    require_finite(x, split, manifest, args.features)
    device = resolve_device(args.device)
    log.info("training %s on %s, seed %d", settings, device, args.seed)
    train, val = split == "train", split == "val"
    resume = ResumeFile(Path(args.resume), args.checkpoint_every) if args.resume else None
    checkpoint, history = fit(
        x[train],
        labels[train],
        x[val],
        labels[val],
        settings,
        args.seed,
        device,
        progress=not args.quiet,
        collapse_spread=args.collapse_spread,
        resume=resume,
    )
    checkpoint["settings"] = dataclasses.asdict(settings)
    checkpoint["device"] = str(device)
    log.info("best epoch %d, validation mean silhouette %.4f", checkpoint["epoch"], checkpoint["val_silhouette"])
    if checkpoint["epoch"] == 0:
        log.warning(
            "no epoch improved on the untrained model, which is the one kept: see the loss and spread "
            "in %s (a collapse, too few pairs per batch, or a learning rate too high)",
            args.history,
        )
    write_csv(history, args.history)
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    if resume:
        resume.remove()
