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


def _cell(row: pd.Series) -> str:
    if np.isnan(row["mean"]):
        return "n/a"
    text = f"{row['mean']:.3f}"
    if row["n_seeds"] > 1 and not np.isnan(row["std"]):
        text += f" ± {row['std']:.3f}"
    if row["experiment"] != BASELINE and not np.isnan(row["delta_vs_InitEmb"]):
        text += f" ({row['delta_vs_InitEmb']:+.3f})"
    return text


def markdown(table: pd.DataFrame, title: str) -> str:
    """Paper-style tables, one per split: rows experiments, columns level x metric."""
    extractor = ", ".join(sorted(table["extractor"].unique()))
    lines = [f"# {title}", "", f"Features: **{extractor}**. Cells: mean ± std over seeds "
             f"(change against {BASELINE}); n/a: not defined for this split.", ""]
    for split, part in table.groupby("split", sort=False):
        columns = list(dict.fromkeys(zip(part["level"], part["metric"])))
        lines += [f"## {split}", "", "| experiment | seeds | " + " | ".join(f"{l} {m}" for l, m in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for experiment, rows in part.groupby("experiment", sort=False):
            cells = {(r["level"], r["metric"]): _cell(r) for _, r in rows.iterrows()}
            seeds = int(rows["n_seeds"].max())
            lines.append(f"| {experiment} | {seeds} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
        lines.append("")
    undefined = table[table["mean"].isna()].drop_duplicates(["split", "level", "metric", "reason"])
    if len(undefined):
        lines += ["## Not defined", ""]
        lines += [f"- {r.split} / {r.level} / {r.metric}: {r.reason}" for r in undefined.itertuples()]
        lines.append("")
    return "\n".join(lines)
