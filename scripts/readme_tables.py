#!/usr/bin/env python3
"""Render the results tables of README.md from committed summary.csv files, or check them.

README.md holds each table between marker comments:

    <!-- table:DATASET KIND -->
    ...generated...
    <!-- /table -->

DATASET names docs/results/DATASET/summary.csv (the summary.csv that `rbl summarise` wrote for
results/DATASET/). KIND is one of:

    silhouette      the headline silhouette table of summary.md (every split and level)
    summary         summary.md without its title, with headings at level 4 (####)
    average SPLIT   the silhouette per level and their average for SPLIT (the authors' criterion)
    average SPLIT epochs
                    the same with each seed's kept epoch, from docs/results/DATASET/kept_epochs.csv
                    (written by --from-results from results/DATASET/models/*/seed*/history.csv)
    split SPLIT     every metric of SPLIT, one table per taxonomy level, headings at level 4

Usage (from the repository root):

    python scripts/readme_tables.py                          # rewrite README.md in place
    python scripts/readme_tables.py --check                  # exit 1 and show a diff if stale
    python scripts/readme_tables.py --from-results results   # first copy results/<ds>/summary.csv
                                                             # of every cited dataset (and the kept
                                                             # epochs where cited), then rewrite

tests/test_readme_tables.py runs the check (hence `make test` and CI).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from rbl.atomic import write_text
from rbl.errors import InputError
from rbl.summary import (
    average_section,
    body,
    kept_epochs,
    read_kept_epochs,
    read_summary,
    silhouette_section,
    split_section,
)

REPO = Path(__file__).resolve().parents[1]
# Markers count only alone on their line, so prose may quote them.
BLOCK = re.compile(r"^<!-- table:(?P<spec>[^\n]*?) -->\n(?P<content>.*?)^<!-- /table -->$", re.DOTALL | re.MULTILINE)
OPEN = re.compile(r"^<!-- table:", re.MULTILINE)
DATASET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # as dataset.name in the config schema
DEPTH = 4  # README: "## Results" > "### <corpus>" > "#### <section>"


def parse_spec(spec: str, line: int) -> tuple[str, str, list[str]]:
    """(dataset, kind, arguments) of a marker's `DATASET KIND [SPLIT]`; `line` only for the message."""
    words = spec.split()
    arity = {"silhouette": (0,), "summary": (0,), "average": (1, 2), "split": (1,)}
    if (
        len(words) < 2
        or words[1] not in arity
        or len(words) - 2 not in arity[words[1]]
        or (len(words) == 4 and words[3] != "epochs")
    ):
        raise InputError(
            f"README.md, line {line}: marker 'table:{spec}' is not 'table:DATASET KIND', "
            "KIND one of: silhouette, summary, average SPLIT [epochs], split SPLIT"
        )
    if not DATASET.fullmatch(words[0]):
        raise InputError(
            f"README.md, line {line}: dataset name {words[0]!r} must be a dataset.name "
            "(letters, digits, '_', '.', '-', not first '.' or '-'), the folder under results/"
        )
    return words[0], words[1], words[2:]


def render(table: pd.DataFrame, kind: str, args: list[str], epochs: pd.DataFrame | None = None) -> str:
    """The Markdown of one marked block (without the markers); `epochs` for 'average SPLIT epochs'."""
    if kind == "silhouette":
        lines = silhouette_section(table, DEPTH)[2:]  # the README names the table itself
    elif kind == "summary":
        return body(table, DEPTH).rstrip("\n") + "\n"
    elif kind == "average":
        lines = average_section(table, args[0], epochs if args[1:] == ["epochs"] else None)
    else:
        if args[0] not in set(table["split"]):
            raise InputError(
                f"no split {args[0]!r} in the summary table (splits present: "
                f"{', '.join(dict.fromkeys(table['split']))})"
            )
        lines = split_section(table, args[0], DEPTH)[2:]  # the README introduces the split
    return "\n".join(lines).rstrip("\n") + "\n"


def _specs(readme: str) -> list[tuple[str, str, list[str]]]:
    return [parse_spec(m["spec"], readme[: m.start()].count("\n") + 1) for m in BLOCK.finditer(readme)]


def datasets(readme: str) -> list[str]:
    """The datasets the README's markers cite, in order."""
    return list(dict.fromkeys(dataset for dataset, _, _ in _specs(readme)))


def datasets_with_epochs(readme: str) -> list[str]:
    """The datasets whose kept epochs the README cites."""
    return list(dict.fromkeys(dataset for dataset, _, args in _specs(readme) if args[1:] == ["epochs"]))


def epochs_of_run(results: Path) -> pd.DataFrame:
    """kept_epochs of every run under results/<dataset>/models/<exp>/seed<k>/history.csv."""
    paths = sorted(results.glob("models/*/seed*/history.csv"))
    if not paths:
        raise InputError(f"{results}/models: no <experiment>/seed<k>/history.csv; run the workflow first")
    histories = {}
    for path in paths:
        seed = path.parent.name.removeprefix("seed")
        if not seed.isdigit():
            raise InputError(f"{path}: the folder should be seed<number>")
        try:
            histories[(path.parent.parent.name, int(seed))] = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: not a readable CSV ({error})") from None
        if not {"epoch", "val_silhouette"} <= set(histories[(path.parent.parent.name, int(seed))].columns):
            raise InputError(f"{path}: no epoch and val_silhouette columns; not a training history")
    return kept_epochs(histories)


def render_readme(
    readme: str, load: Callable[[str], pd.DataFrame], load_epochs: Callable[[str], pd.DataFrame] | None = None
) -> str:
    """README text with every marked block re-rendered from `load(dataset)` (and
    `load_epochs(dataset)` where a marker asks for the kept epochs)."""
    if len(OPEN.findall(readme)) != len(BLOCK.findall(readme)):
        starts = [readme[: m.start()].count("\n") + 1 for m in OPEN.finditer(readme)]
        closed = {readme[: m.start()].count("\n") + 1 for m in BLOCK.finditer(readme)}
        line = next(s for s in starts if s not in closed)
        raise InputError(
            f"README.md, line {line}: table marker without its '<!-- /table -->' "
            "(or the marker is not alone on its line)"
        )
    tables: dict[str, pd.DataFrame] = {}

    def replace(match: re.Match) -> str:
        line = readme[: match.start()].count("\n") + 1
        dataset, kind, args = parse_spec(match["spec"], line)
        if dataset not in tables:
            tables[dataset] = load(dataset)
        epochs = None
        if args[1:] == ["epochs"]:
            if load_epochs is None:
                raise InputError(f"README.md, line {line}: no source of kept epochs for table:{match['spec']}")
            epochs = load_epochs(dataset)
        try:
            content = render(tables[dataset], kind, args, epochs)
        except InputError as err:
            raise InputError(f"README.md, line {line} (table:{match['spec']}): {err}") from None
        return f"<!-- table:{match['spec']} -->\n\n{content}\n<!-- /table -->"

    return BLOCK.sub(replace, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument(
        "--tables",
        type=Path,
        default=REPO / "docs/results",
        help="folder holding <dataset>/summary.csv (default: docs/results)",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if README.md is stale")
    parser.add_argument(
        "--from-results",
        type=Path,
        metavar="DIR",
        help="first copy DIR/<dataset>/summary.csv of every dataset the README cites",
    )
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text(encoding="utf-8")
        if args.from_results is not None:
            if args.check:
                raise InputError("--check compares with the committed tables; do not combine it with --from-results")
            for dataset in datasets(readme):
                source = args.from_results / dataset / "summary.csv"
                read_summary(source)  # refuse a broken table before it replaces a good one
                (args.tables / dataset).mkdir(parents=True, exist_ok=True)
                write_text(args.tables / dataset / "summary.csv", source.read_text(encoding="utf-8"))
            for dataset in datasets_with_epochs(readme):
                epochs = epochs_of_run(args.from_results / dataset)
                write_text(args.tables / dataset / "kept_epochs.csv", epochs.to_csv(index=False))
        rendered = render_readme(
            readme,
            lambda dataset: read_summary(args.tables / dataset / "summary.csv"),
            lambda dataset: read_kept_epochs(args.tables / dataset / "kept_epochs.csv"),
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rendered == readme:
        print(f"{args.readme}: tables up to date")
        return 0
    if args.check:
        sys.stdout.writelines(
            difflib.unified_diff(
                readme.splitlines(True),
                rendered.splitlines(True),
                f"{args.readme} (committed)",
                f"{args.readme} (rendered)",
            )
        )
        print(
            f"{args.readme}: tables differ from {args.tables}/<dataset>/summary.csv; "
            "run python scripts/readme_tables.py and commit",
            file=sys.stderr,
        )
        return 1
    write_text(args.readme, rendered)
    print(f"{args.readme}: tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
