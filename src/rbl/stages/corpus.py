"""`rbl corpus`: a realistic benchmark corpus (fluidsynth instruments, espeak-ng speech)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("rbl")

HELP = "generate a realistic benchmark corpus (fluidsynth instruments, espeak-ng speech)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rbl.corpora import CORPORA

    p.add_argument(
        "--kind",
        required=True,
        choices=sorted(CORPORA),
        help="instruments: GM family -> instrument; speech: language family -> language -> voice",
    )
    p.add_argument("--out", required=True, help="folder for audio/, annotations.csv and taxonomy.csv")
    p.add_argument(
        "--clips-per-class", type=int, default=None, help="clips per leaf (default: instruments 32, speech 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the rendered clips (default: 0)")


def run(args: argparse.Namespace) -> None:
    from rbl.corpora import CORPORA, DEFAULT_CLIPS_PER_CLASS

    clips = args.clips_per_class if args.clips_per_class is not None else DEFAULT_CLIPS_PER_CLASS[args.kind]
    CORPORA[args.kind](Path(args.out), clips_per_class=clips, seed=args.seed, progress=not args.quiet)
    log.info("%s corpus written to %s", args.kind, args.out)
