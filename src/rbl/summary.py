"""Tables over experiments and seeds: a long table, its mean/std summary and a Markdown rendering."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BASELINE = "InitEmb"
KEYS = ["dataset", "experiment", "extractor", "split", "level", "metric"]


def long_table(results: list[dict]) -> pd.DataFrame:
    """One row per (experiment, seed, split, level, metric) from evaluate's JSON records."""
    rows = []
    for result in results:
        for m in result["metrics"]:
            value = m["value"] if m["value"] is not None else math.nan
            rows.append({"dataset": result["dataset"], "experiment": result["experiment"],
                         "seed": result["seed"], "extractor": result["extractor"], "split": m["split"],
                         "level": m["level"], "metric": m["metric"], "value": value, "k": m.get("k"),
                         "reason": m["reason"]})
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
        rows.append({"run": name, "first_epoch": int(below["epoch"].iloc[0]),
                     "lowest_spread": float(history["spread"].min()),
                     "kept_epoch": int(best["epoch"]) if best is not None else -1,
                     "kept_spread": float(best["spread"]) if best is not None else math.nan})
    return pd.DataFrame(rows, columns=["run", "first_epoch", "lowest_spread", "kept_epoch", "kept_spread"])


def collapse_markdown(collapsed: pd.DataFrame, runs: int, threshold: float) -> str:
    """The summary's note on collapse: which runs' embeddings collapsed, or that none did."""
    lines = ["## Collapse", ""]
    if not len(collapsed):
        lines.append(f"No run's training embeddings collapsed (spread, the mean pairwise distance of "
                     f"a fixed sample of training clips, stayed at or above {threshold:g} in all {runs} runs).")
        return "\n".join(lines + [""])
    lines += [f"**{len(collapsed)} of {runs} runs collapsed**: the spread of their training embeddings "
              f"(mean pairwise distance of a fixed sample) fell below {threshold:g}. Their figures "
              "come from an earlier epoch, kept by early stopping; consider target: gap, a larger "
              "out_dim or a lower lr.", "",
              "| run | first epoch below | lowest spread | kept epoch | spread there |", "|---|---|---|---|---|"]
    lines += [f"| {r.run} | {r.first_epoch} | {r.lowest_spread:.4f} | {r.kept_epoch} | {r.kept_spread:.4f} |"
              for r in collapsed.itertuples()]
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
    lines = ["| experiment | seeds | " + " | ".join(" ".join(map(str, c)) for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for experiment, rows in part.groupby("experiment", sort=False):
        cells = {tuple(r[c] for c in by): _cell(r) for _, r in rows.iterrows()}
        seeds = int(rows["n_seeds"].max())
        lines.append(f"| {experiment} | {seeds} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    return lines


def markdown(table: pd.DataFrame, title: str) -> str:
    """The silhouette of every experiment per split and level (the headline), then paper-style
    tables, one per split: rows experiments, columns level x metric."""
    extractor = ", ".join(sorted(table["extractor"].unique()))
    lines = [f"# {title}", "", f"Features: **{extractor}**. Cells: mean ± std over seeds "
             f"(change against {BASELINE}); n/a: not defined for this split.", ""]
    lines += ["## Silhouette", "", *_grid(table[table["metric"] == "silhouette"], ["split", "level"]), ""]
    for split, part in table.groupby("split", sort=False):
        lines += [f"## {split}", "", *_grid(part, ["level", "metric"]), ""]
    undefined = table[table["mean"].isna()].drop_duplicates(["split", "level", "metric", "reason"])
    if len(undefined):
        lines += ["## Not defined", ""]
        lines += [f"- {r.split} / {r.level} / {r.metric}: {r.reason}" for r in undefined.itertuples()]
        lines.append("")
    return "\n".join(lines)
