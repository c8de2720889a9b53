"""`rbl summarise`: tables and a bar chart over experiments and seeds, and the runs that collapsed."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from rbl.atomic import write_text
from rbl.errors import InputError
from rbl.io import save_figure, write_csv
from rbl.stages.options import finite

log = logging.getLogger("rbl")

HELP = "tables and a bar chart over experiments and seeds"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON of every run (evaluate)")
    p.add_argument("--title", default="Results", help="title of the markdown table (default: %(default)s)")
    p.add_argument("--histories", nargs="*", default=[], help="history.csv of every trained run")
    p.add_argument("--names", nargs="*", default=[], help="one 'experiment/seed' label per history")
    p.add_argument(
        "--collapse-spread",
        type=finite,
        default=0.1,
        help="report runs whose embedding spread fell below this (default: %(default)s)",
    )
    p.add_argument("--out-long", required=True, help="metrics.csv: one row per seed, split, level, metric")
    p.add_argument("--out-csv", required=True, help="summary.csv: mean and spread over seeds")
    p.add_argument("--out-md", required=True, help="summary.md: the table as markdown")
    p.add_argument("--out-plot", required=True, help="bar chart to write (.png)")


def run(args: argparse.Namespace) -> None:
    from rbl.plots import plot_metric_bars
    from rbl.summary import collapse_markdown, collapsed_runs, long_table, markdown, summarise

    if len(args.histories) != len(args.names):
        raise InputError("summarise: give one --names entry per --histories file")
    results = [json.loads(Path(p).read_text()) for p in args.metrics]
    long = long_table(results)
    table = summarise(long)
    write_csv(long, args.out_long)
    write_csv(table, args.out_csv)
    text = markdown(table, title=args.title)
    if args.histories:
        histories = {name: pd.read_csv(path) for name, path in zip(args.names, args.histories)}
        collapsed = collapsed_runs(histories, args.collapse_spread)
        for run in collapsed.itertuples():
            log.warning(
                "%s: the training embeddings collapsed (spread %.4f at epoch %d, below %g)",
                run.run,
                run.lowest_spread,
                run.first_epoch,
                args.collapse_spread,
            )
        text += "\n" + collapse_markdown(collapsed, len(histories), args.collapse_spread)
    write_text(args.out_md, text)
    save_figure(plot_metric_bars(table), args.out_plot)
    print(text)
