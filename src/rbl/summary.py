"""Tables over experiments and seeds: a long table, its mean/std summary and a Markdown rendering."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rbl.errors import InputError

BASELINE = "InitEmb"
KEYS = ["dataset", "experiment", "extractor", "split", "level", "metric"]


def long_table(results: list[dict]) -> pd.DataFrame:
    """One row per (experiment, seed, split, level, metric) from evaluate's JSON records."""
    rows = []
    for result in results:
        for m in result["metrics"]:
            value = m["value"] if m["value"] is not None else math.nan
            rows.append(
                {
                    "dataset": result["dataset"],
                    "experiment": result["experiment"],
                    "seed": result["seed"],
                    "extractor": result["extractor"],
                    "split": m["split"],
                    "level": m["level"],
                    "metric": m["metric"],
                    "value": value,
                    "k": m.get("k"),
                    "reason": m["reason"],
                }
            )
    return pd.DataFrame(rows)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and count over seeds, and the change of the mean against InitEmb."""
    grouped = long.groupby(KEYS, sort=False)
    table = grouped["value"].agg(mean="mean", std="std", n_seeds="size").reset_index()
    # The k chosen on validation, per seed (may differ between seeds), and why a value is undefined.
    table["k"] = grouped["k"].agg(lambda ks: ",".join(sorted({str(int(k)) for k in ks.dropna()}))).to_numpy()
    table["reason"] = grouped["reason"].agg(lambda rs: "; ".join(sorted({r for r in rs if r}))).to_numpy()
    base = table[table["experiment"] == BASELINE].set_index(["split", "level", "metric"])["mean"]
    index = pd.MultiIndex.from_frame(table[["split", "level", "metric"]])
    table["delta_vs_InitEmb"] = table["mean"].to_numpy() - base.reindex(index).to_numpy()
    return table


def collapsed_runs(histories: dict[str, pd.DataFrame], threshold: float) -> pd.DataFrame:
    """Runs whose training embeddings' spread fell below `threshold`: run, first epoch below it,
    lowest spread, and the spread at the kept (best validation) epoch."""
    rows = []
    for name, history in histories.items():
        if "spread" not in history or not (history["spread"] < threshold).any():
            continue
        below = history[history["spread"] < threshold]
        best = history.loc[history["val_silhouette"].idxmax()] if history["val_silhouette"].notna().any() else None
        rows.append(
            {
                "run": name,
                "first_epoch": int(below["epoch"].iloc[0]),
                "lowest_spread": float(history["spread"].min()),
                "kept_epoch": int(best["epoch"]) if best is not None else -1,
                "kept_spread": float(best["spread"]) if best is not None else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["run", "first_epoch", "lowest_spread", "kept_epoch", "kept_spread"])


def kept_epochs(histories: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """The epoch of each run's kept checkpoint, from its history.csv: the first epoch with the
    highest validation silhouette (training replaces the kept model only on a strict improvement).
    Keys (experiment, seed); rows experiment, seed, epoch (-1: no validation silhouette at all)."""
    rows = [
        {
            "experiment": experiment,
            "seed": seed,
            "epoch": int(h.loc[h["val_silhouette"].idxmax(), "epoch"]) if h["val_silhouette"].notna().any() else -1,
        }
        for (experiment, seed), h in histories.items()
    ]
    return pd.DataFrame(rows, columns=["experiment", "seed", "epoch"]).sort_values(
        ["experiment", "seed"], ignore_index=True
    )


def collapse_markdown(collapsed: pd.DataFrame, runs: int, threshold: float) -> str:
    """The summary's note on collapse: which runs' embeddings collapsed, or that none did."""
    lines = ["## Collapse", ""]
    if not len(collapsed):
        lines.append(
            f"No run's training embeddings collapsed (spread, the mean pairwise distance of "
            f"a fixed sample of training clips, stayed at or above {threshold:g} in all {runs} runs)."
        )
        return "\n".join(lines + [""])
    lines += [
        f"**{len(collapsed)} of {runs} runs collapsed**: the spread of their training embeddings "
        f"(mean pairwise distance of a fixed sample) fell below {threshold:g}. Their figures "
        "come from an earlier epoch, kept by early stopping; consider target: gap, a larger "
        "out_dim or a lower lr.",
        "",
        "| run | first epoch below | lowest spread | kept epoch | spread there |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.run} | {r.first_epoch} | {r.lowest_spread:.4f} | {r.kept_epoch} | {r.kept_spread:.4f} |"
        for r in collapsed.itertuples()
    ]
    return "\n".join(lines + [""])


def _cell(row: pd.Series) -> str:
    if np.isnan(row["mean"]):
        return "n/a"
    text = f"{row['mean']:.3f}"
    if row["n_seeds"] > 1 and not np.isnan(row["std"]):
        text += f" ± {row['std']:.3f}"
    if row["experiment"] != BASELINE and not np.isnan(row["delta_vs_InitEmb"]):
        text += f" ({row['delta_vs_InitEmb']:+.3f})"
    return text


def _grid(part: pd.DataFrame, by: list[str]) -> list[str]:
    """A Markdown table: one row per experiment (with its number of seeds), one column per distinct
    combination of the `by` columns, in order of appearance."""
    columns = list(dict.fromkeys(zip(*(part[c] for c in by))))
    lines = [
        "| experiment | seeds | " + " | ".join(" ".join(map(str, c)) for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for experiment, rows in part.groupby("experiment", sort=False):
        cells = {tuple(r[c] for c in by): _cell(r) for _, r in rows.iterrows()}
        seeds = int(rows["n_seeds"].max())
        lines.append(f"| {experiment} | {seeds} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    return lines


def _heading(depth: int, text: str) -> list[str]:
    return ["#" * depth + " " + text, ""]


def silhouette_section(table: pd.DataFrame, depth: int = 2) -> list[str]:
    """The headline: the silhouette of every experiment per split and level."""
    return [*_heading(depth, "Silhouette"), *_grid(table[table["metric"] == "silhouette"], ["split", "level"]), ""]


def split_section(table: pd.DataFrame, split: str, depth: int = 2) -> list[str]:
    """Every metric of one split, one table per taxonomy level (rows experiments, columns that
    level's metrics), so a table stays a handful of columns wide whatever the depth of the taxonomy.
    The level `all` (metrics over the whole tree, e.g. spearman) gets its own table."""
    part = table[table["split"] == split]
    lines = _heading(depth, split)
    for level, rows in part.groupby("level", sort=False):
        name = "all levels" if level == "all" else level
        lines += [*_heading(depth + 1, f"{split}: {name}"), *_grid(rows, ["metric"]), ""]
    return lines


def average_section(table: pd.DataFrame, split: str, epochs: pd.DataFrame | None = None) -> list[str]:
    """The authors' model-selection criterion for one split: the silhouette per level (mean ± std
    over seeds) and their average (the mean of the level means; the seed std of the average needs
    per-seed values, which summary.csv does not hold). With `epochs` (as `kept_epochs` returns), a
    last column lists each seed's kept epoch ('-' for an experiment without training)."""
    part = table[(table["split"] == split) & (table["metric"] == "silhouette")]
    if not len(part):
        raise InputError(
            f"no silhouette rows for split {split!r} in the summary table "
            f"(splits present: {', '.join(dict.fromkeys(table['split']))})"
        )
    levels = list(dict.fromkeys(part["level"]))
    extra = [] if epochs is None else ["kept epoch per seed"]
    lines = [
        "| experiment | seeds | "
        + " | ".join([f"{level} silhouette" for level in levels] + ["average"] + extra)
        + " |",
        "|---|---|" + "---|" * (len(levels) + 1 + len(extra)),
    ]
    for experiment, rows in part.groupby("experiment", sort=False):
        by_level = rows.set_index("level")
        cells = []
        for level in levels:
            row = by_level.loc[level] if level in by_level.index else None
            text = "n/a" if row is None or np.isnan(row["mean"]) else f"{row['mean']:.3f}"
            if row is not None and row["n_seeds"] > 1 and not np.isnan(row["std"]):
                text += f" ± {row['std']:.3f}"
            cells.append(text)
        means = by_level["mean"].reindex(levels).to_numpy(dtype=float)
        average = "n/a" if np.isnan(means).any() else f"{means.mean():.3f}"
        seeds = int(rows["n_seeds"].max())
        cells.append(average)
        if epochs is not None:
            kept = epochs[epochs["experiment"] == experiment].sort_values("seed")["epoch"]
            cells.append(", ".join(str(int(e)) for e in kept) if len(kept) else "-")
        lines.append(f"| {experiment} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def body(table: pd.DataFrame, depth: int = 2) -> str:
    """The summary without its title: the features line, the silhouette headline, every metric per
    split and level, and the undefined values with their reasons. `depth` is the heading level of
    the sections (2 in summary.md; deeper where it is embedded, e.g. in README.md)."""
    extractor = ", ".join(sorted(table["extractor"].unique()))
    lines = [
        f"Features: **{extractor}**. Cells: mean ± std over seeds "
        f"(change against {BASELINE}); n/a: not defined for this split.",
        "",
    ]
    lines += silhouette_section(table, depth)
    for split in dict.fromkeys(table["split"]):
        lines += split_section(table, split, depth)
    undefined = table[table["mean"].isna()].drop_duplicates(["split", "level", "metric", "reason"])
    if len(undefined):
        lines += _heading(depth, "Not defined")
        lines += [f"- {r.split} / {r.level} / {r.metric}: {r.reason}" for r in undefined.itertuples()]
        lines.append("")
    return "\n".join(lines)


def markdown(table: pd.DataFrame, title: str) -> str:
    """summary.md: a title, then `body` (the silhouette headline, then one table per split and level)."""
    return f"# {title}\n\n" + body(table)


SUMMARY_COLUMNS = [
    "dataset",
    "experiment",
    "extractor",
    "split",
    "level",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "k",
    "reason",
    "delta_vs_InitEmb",
]


def read_summary(path: str | Path) -> pd.DataFrame:
    """A summary.csv as written by `rbl summarise` (the table `summarise` returns), checked."""
    path = Path(path)
    try:
        table = pd.read_csv(
            path,
            dtype={"k": str, "reason": str},
            keep_default_na=False,
            na_values={"mean": [""], "std": [""], "delta_vs_InitEmb": [""]},
        )
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file; copy results/<dataset>/summary.csv of a finished run "
            "there (scripts/readme_tables.py --from-results results)"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV ({error})") from None
    missing = [c for c in SUMMARY_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the summary.csv that "
            f"`rbl summarise` writes (columns {', '.join(SUMMARY_COLUMNS)})"
        )
    for column in ("mean", "std", "n_seeds", "delta_vs_InitEmb"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise InputError(f"{path}, line {line}: column {column} holds {table[column][bad].iloc[0]!r}, not a number")
        table[column] = values
    return table


def read_kept_epochs(path: str | Path) -> pd.DataFrame:
    """A kept_epochs.csv (experiment, seed, epoch: `kept_epochs` written out), checked."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"experiment": str})
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such file; write it from a run's training histories with "
            "scripts/readme_tables.py --from-results results"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV ({error})") from None
    missing = [c for c in ("experiment", "seed", "epoch") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected experiment, seed, epoch")
    for column in ("seed", "epoch"):
        if not pd.api.types.is_integer_dtype(table[column]):
            raise InputError(f"{path}: column {column} must hold whole numbers")
    return table
