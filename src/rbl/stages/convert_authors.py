"""`rbl convert-authors`: the RbL authors' example-data CSVs as annotations and a taxonomy."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rbl.errors import InputError
from rbl.io import read_table, write_csv

log = logging.getLogger("rbl")

HELP = "the RbL authors' example-data CSVs -> annotations and taxonomy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, help="folder with train.csv, val.csv (and test.csv)")
    p.add_argument("--out-annotations", required=True, help="annotations CSV to write (file, labels, split)")
    p.add_argument("--out-taxonomy", required=True, help="taxonomy CSV to write")


def run(args: argparse.Namespace) -> None:
    from rbl.convert import AUTHORS_SPLITS, authors_csv

    folder = Path(args.dir)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: folder not found; it should hold the authors' train.csv and val.csv, "
            "optionally test.csv (set dataset.authors_csv_dir in the config)"
        )
    # train and val are required (a missing one is named by read_table); test.csv is optional.
    tables = {
        name: read_table(folder / f"{name}.csv")
        for name in AUTHORS_SPLITS
        if name != "test" or (folder / "test.csv").is_file()
    }
    if "test" not in tables:
        log.info("%s has no test.csv: no test_seen clips from the authors' split", folder)
    annotations, taxonomy = authors_csv(tables)
    write_csv(taxonomy, args.out_taxonomy)
    write_csv(annotations, args.out_annotations)
    log.info("converted %d clips (%s) from %s", len(annotations), annotations["split"].value_counts().to_dict(), folder)
