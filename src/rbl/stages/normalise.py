"""`rbl normalise`: features z-scored with the training split's statistics."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from rbl.atomic import atomic_path
from rbl.errors import InputError
from rbl.io import load_array, read_splits, read_table, require_finite

log = logging.getLogger("rbl")

HELP = "z-score features with training-split statistics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", required=True, help="feature matrix of gather (.npy)")
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--splits", required=True, help="splits CSV of the split stage")
    p.add_argument("--out", required=True, help=".npz to write: x (normalised features), mean, std")


def run(args: argparse.Namespace) -> None:
    from rbl import normalise
    from rbl.data import SKIPPED

    feats = load_array(args.features)
    manifest = read_table(args.manifest)
    split = read_splits(manifest, args.splits)
    if feats.ndim != 2 or len(feats) != len(manifest):
        raise InputError(
            f"{args.features}: shape {feats.shape} does not match the manifest's {len(manifest)} "
            "clips; rerun extraction"
        )
    require_finite(feats, split, manifest, args.features)
    train = split == "train"
    if not train.any():
        raise InputError(f"{args.splits}: no training clips to take statistics from; rerun the split stage")
    mean, std = normalise.fit(feats[train])
    with atomic_path(args.out) as tmp:
        np.savez(tmp, x=normalise.apply(feats, mean, std), mean=mean, std=std)
    log.info(
        "normalised %d clips with statistics of %d training clips (%d skipped clip(s) left as NaN)",
        len(feats),
        int(train.sum()),
        int((split == SKIPPED).sum()),
    )
