"""`rbl split`: train/val/test_seen/test_unseen per clip, holding out whole fine classes."""

from __future__ import annotations

import argparse
import logging

from rbl.data import SPLITS
from rbl.errors import InputError
from rbl.io import read_table, write_csv

log = logging.getLogger("rbl")

HELP = f"{'/'.join(SPLITS)}, holding out fine classes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--taxonomy", required=True, help="taxonomy CSV of ingest")
    p.add_argument(
        "--unseen-per-parent",
        type=int,
        required=True,
        help="fine classes held out whole (test_unseen) under every parent",
    )
    p.add_argument("--fractions", required=True, help="e.g. train=0.6,val=0.2,test_seen=0.2")
    p.add_argument("--seed", type=int, required=True, help="seed of the assignment")
    p.add_argument("--skipped", default="", help="skipped.csv of extraction: these clips get the split 'skipped'")
    p.add_argument("--out", required=True, help="splits CSV to write (file, split)")


def run(args: argparse.Namespace) -> None:
    from rbl.data import load_taxonomy
    from rbl.split import make_splits, parse_fractions

    taxonomy = load_taxonomy(args.taxonomy)
    fractions = parse_fractions(args.fractions)
    manifest = read_table(args.manifest)
    skipped: set[str] = set()
    if args.skipped:
        table = read_table(args.skipped)
        if "file" not in table.columns:
            raise InputError(f"{args.skipped}: no 'file' column; rerun feature extraction")
        skipped = set(table["file"])
        if skipped:
            log.warning(
                "%d clip(s) skipped at extraction are left out of every split (see %s)", len(skipped), args.skipped
            )
    splits = make_splits(
        manifest,
        list(taxonomy.levels),
        args.unseen_per_parent,
        fractions,
        args.seed,
        skipped=skipped,
        source=args.manifest,
    )
    log.info("splits: %s", splits["split"].value_counts().to_dict())
    write_csv(splits, args.out)
