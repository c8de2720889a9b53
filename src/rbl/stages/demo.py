"""`rbl demo`: the synthetic demo dataset (audio, annotations, taxonomy)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("rbl")

HELP = "generate the synthetic demo dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for audio/, annotations.csv and taxonomy.csv")
    p.add_argument("--clips-per-class", type=int, required=True, help="clips per fine class")
    p.add_argument("--seed", type=int, required=True, help="seed of the generated sounds")


def run(args: argparse.Namespace) -> None:
    from rbl.demo import generate

    generate(Path(args.out), clips_per_class=args.clips_per_class, seed=args.seed)
    log.info("demo dataset written to %s", args.out)
