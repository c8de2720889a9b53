"""The `rbl` command: one subcommand per pipeline stage, reading files and writing files.

Every stage runs without Snakemake; the workflow's rules call these. Outputs are written
atomically. Bad input ends with `error: <file/row/key>: <what to do>` and exit status 2.
Each stage's flags and code live in rbl/stages/<stage>.py; this module is the table of stages
and the error handling they all run under.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rbl import __version__
from rbl.errors import InputError
from rbl.stages import (
    convert_authors,
    corpus,
    demo,
    embed,
    evaluate,
    extract,
    gather,
    ingest,
    normalise,
    plot_embeddings,
    plot_training,
    provenance,
    split,
    summarise,
    train,
)

# `rbl <name>` -> its module (HELP, add_arguments, run), in the order the help lists them. The
# module of stage `a-b` is rbl.stages.a_b: its import closure is the stage's code hash (rbl.codehash).
STAGES = {
    "demo": demo,
    "corpus": corpus,
    "convert-authors": convert_authors,
    "ingest": ingest,
    "split": split,
    "extract": extract,
    "gather": gather,
    "normalise": normalise,
    "train": train,
    "embed": embed,
    "evaluate": evaluate,
    "plot-embeddings": plot_embeddings,
    "plot-training": plot_training,
    "summarise": summarise,
    "provenance": provenance,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rbl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rbl {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="stage")
    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=stage.HELP, description=stage.__doc__.splitlines()[0])
        stage.add_arguments(p)
        p.set_defaults(func=stage.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="rbl %(levelname)s: %(message)s", stream=sys.stderr)
    if not sys.stderr.isatty():
        # A log file (Snakemake's jobs): a progress line every 30 s, not every update (a long
        # training filled its log with bars). tqdm reads TQDM_* from the environment; a user's own wins.
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the stage cannot read or write: one line naming it, no traceback
        if err.filename is None:
            raise
        print(
            f"error: {err.filename}: {err.strerror or err}; check the file, its folder and their permissions",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
