"""`rbl plot-training`: loss and validation silhouette per epoch of every trained run."""

from __future__ import annotations

import argparse

import pandas as pd

from rbl.errors import InputError
from rbl.io import save_figure
from rbl.stages.options import finite

HELP = "loss and validation silhouette per epoch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--histories", nargs="+", required=True, help="history.csv of every trained run")
    p.add_argument("--names", nargs="+", required=True, help="one 'experiment/seed' label per history")
    p.add_argument(
        "--collapse-spread",
        type=finite,
        default=0.1,
        help="shade spreads below this as collapse (default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="image to write (.png)")


def run(args: argparse.Namespace) -> None:
    from rbl.plots import plot_training_curves

    if len(args.histories) != len(args.names):
        raise InputError("plot-training: give one --names entry per --histories file")
    histories = {name: pd.read_csv(path) for name, path in zip(args.names, args.histories)}
    save_figure(plot_training_curves(histories, args.collapse_spread), args.out)
