"""Figures for the report: embeddings of a split, training curves, metric bars over experiments.

Each function returns a matplotlib Figure (Agg backend, no display needed); the caller saves it.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

MARKERS = "osD^v<>PX*hp8"
METRIC_ORDER = ["silhouette", "knn_acc", "knn_acc_loo", "map_at_r", "parent_acc", "spearman", "mistake_severity"]
LOWER_IS_BETTER = {"mistake_severity"}


def _colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _sphere_coordinates(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of unit vectors after a rotation that brings their mean direction to
    (0, 0), the centre of the map, where the projection distorts least."""
    mean = unit.mean(axis=0)
    if np.linalg.norm(mean) < 1e-8:
        mean = np.array([1.0, 0.0, 0.0])
    a = mean / np.linalg.norm(mean)
    # Orthonormal basis whose first axis is the mean direction.
    basis = np.linalg.qr(np.column_stack([a, np.eye(3)[:, np.argsort(np.abs(a))[:2]]]))[0]
    basis[:, 0] *= np.sign(basis[:, 0] @ a)
    rotated = unit @ basis
    lon = np.arctan2(rotated[:, 1], rotated[:, 0])
    lat = np.arcsin(np.clip(rotated[:, 2], -1.0, 1.0))
    return lon, lat


KEY_ROWS = 32  # rows of the class key per column before another column starts
KEY_FONT = 8.0  # points; the key's text size whatever the number of classes


def _subsample(emb: np.ndarray, labels: np.ndarray, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` rows, drawn at random (reproducibly), in their original order."""
    if len(emb) <= max_points:
        return emb, labels
    keep = np.sort(np.random.default_rng(seed).choice(len(emb), max_points, replace=False))
    return emb[keep], labels[keep]


def _project(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """2-d coordinates of the embeddings and how to label them: 3-d outputs (the paper's model ends
    in L2 normalisation) as longitude/latitude for a Mollweide map, other sizes by PCA."""
    if emb.shape[1] == 3:
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        xs, ys = _sphere_coordinates(unit)
        return (
            xs,
            ys,
            {
                "projection": "mollweide",
                "xlabel": "longitude (mean direction at the centre)",
                "ylabel": "latitude",
                "name": "unit sphere, equal-area (Mollweide) map",
            },
        )
    centred = emb - emb.mean(axis=0)
    if centred.shape[1] < 2:
        centred = np.column_stack([centred, np.zeros((len(centred), 2 - centred.shape[1]))])
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    xs, ys = (centred @ vt[:2].T).T
    share = s[:2] ** 2 / max(float((s**2).sum()), 1e-12)
    return (
        xs,
        ys,
        {
            "projection": None,
            "xlabel": f"PC1 ({share[0]:.0%} of variance)",
            "ylabel": f"PC2 ({share[1]:.0%} of variance)",
            "name": f"PCA of {emb.shape[1]}-d embeddings",
        },
    )


def _styles(coarse: np.ndarray, fine: np.ndarray) -> tuple[dict, dict]:
    """A colour per coarse class and a marker per fine class, distinct among the fine classes of
    one parent (the colour tells the parents apart): {coarse: colour}, {(coarse, fine): marker}."""
    coarse_codes = sorted(set(coarse[coarse >= 0].tolist()))
    colour = dict(zip(coarse_codes, _colours(len(coarse_codes))))
    marker = {}
    for c in coarse_codes:
        for i, f in enumerate(sorted(set(fine[(coarse == c) & (fine >= 0)].tolist()))):
            marker[(c, f)] = MARKERS[i % len(MARKERS)]
    return colour, marker


def _scatter(
    ax, xs: np.ndarray, ys: np.ndarray, coarse: np.ndarray, fine: np.ndarray, colour: dict, marker: dict
) -> None:
    """Every point in its style: known fine classes, then known coarse with unknown fine ('.' in
    the parent's colour), then unlabelled points (grey)."""
    for (c, f), m in marker.items():
        at = (coarse == c) & (fine == f)
        ax.scatter(xs[at], ys[at], s=14, color=colour[c], marker=m, alpha=0.75, linewidths=0)
    for c, rgb in colour.items():
        at = (coarse == c) & (fine < 0)
        if at.any():
            ax.scatter(xs[at], ys[at], s=10, color=rgb, marker=".", alpha=0.6)
    if (coarse < 0).any():
        ax.scatter(xs[coarse < 0], ys[coarse < 0], s=8, color="0.6", marker=".")


def _key_blocks(
    coarse: np.ndarray, fine: np.ndarray, colour: dict, marker: dict, names: list[list[str]], level_names: list[str]
) -> list[tuple[str | None, list[Line2D]]]:
    """The class key as blocks: per coarse class its name (the block's heading, None for a one-level
    taxonomy) and a handle per fine class under it; unlabelled points last."""
    one_level = len(level_names) == 1
    blocks = []
    for c, rgb in colour.items():
        handles = [
            Line2D([], [], color=rgb, marker=m, linestyle="", label=names[-1][f])
            for (cc, f), m in marker.items()
            if cc == c
        ]
        if ((coarse == c) & (fine < 0)).any():
            handles.append(Line2D([], [], color=rgb, marker=".", linestyle="", label=f"({level_names[-1]} unknown)"))
        blocks.append((None if one_level else names[0][c], handles))
    if one_level:  # one block: the classes themselves
        blocks = [(None, [h for _, hs in blocks for h in hs])]
    if (coarse < 0).any():
        blocks.append((None, [Line2D([], [], color="0.6", marker=".", linestyle="", label="unlabelled")]))
    return blocks


def _key_columns(blocks: list[tuple[str | None, list[Line2D]]], rows: int) -> list[list[tuple[Line2D, str]]]:
    """Blocks packed into columns of at most `rows` entries (a block longer than that gets a column
    of its own, continued in the next), never split otherwise; entries are (handle, 'heading' |
    'entry')."""
    columns: list[list[tuple[Line2D, str]]] = [[]]
    for heading, handles in blocks:
        entries = [(Line2D([], [], linestyle="", label=heading), "heading")] if heading is not None else []
        entries += [(h, "entry") for h in handles]
        if columns[-1] and len(columns[-1]) + len(entries) > rows:
            columns.append([])
        while len(entries) > rows:  # a block longer than a column
            columns[-1].extend(entries[:rows])
            entries = entries[rows:]
            columns.append([])
        columns[-1].extend(entries)
    return [c for c in columns if c]


def _draw_key(ax, columns: list[list[tuple[Line2D, str]]], colour_of: dict[str, tuple], title: str) -> None:
    """The key as one legend on its own (axis-less) panel: columns side by side, each coarse
    heading in bold in its colour above its fine classes."""
    height = max(len(c) for c in columns)
    blank = Line2D([], [], linestyle="", label="")
    # A legend fills its columns top to bottom in order, so pad each column to the same height.
    entries = [e for column in columns for e in column + [(blank, "pad")] * (height - len(column))]
    legend = ax.legend(
        handles=[h for h, _ in entries],
        title=title,
        loc="upper left",
        ncol=len(columns),
        fontsize=KEY_FONT,
        title_fontsize=KEY_FONT + 1,
        frameon=False,
        handletextpad=0.3,
        columnspacing=1.2,
        borderaxespad=0.0,
        handlelength=1.2,
        alignment="left",
    )
    for text, (_, kind) in zip(legend.get_texts(), entries):
        if kind == "heading":
            text.set_fontweight("bold")
            text.set_color(colour_of.get(text.get_text(), "black"))
    ax.set_axis_off()


def plot_embeddings(
    emb: np.ndarray,
    labels: np.ndarray,
    names: list[list[str]],
    level_names: list[str],
    title: str,
    max_points: int = 5000,
    seed: int = 0,
) -> Figure:
    """Scatter of one split's embeddings, coloured by coarse class and marked by fine class, with a
    key panel that lists every fine class under its coarse class (readable for 70 classes and more).

    3-d outputs are shown on the sphere in an equal-area Mollweide map; other sizes as a 2-d PCA
    projection. `labels` (N, L) codes (-1 unknown, drawn grey), `names[l][code]` the display name
    of a class at level l. At most `max_points`, drawn at random.
    """
    emb, labels = np.asarray(emb, dtype=float), np.asarray(labels)
    shown = len(emb)
    emb, labels = _subsample(emb, labels, max_points, seed)
    coarse, fine = labels[:, 0], labels[:, -1]
    xs, ys, axes_info = _project(emb)
    colour, marker = _styles(coarse, fine)
    columns = _key_columns(_key_blocks(coarse, fine, colour, marker, names, level_names), KEY_ROWS)
    # The key's width from its longest name per column (about 0.52 em per character) and its markers.
    widths = [0.45 + 0.52 * KEY_FONT / 72 * max(len(h.get_label()) for h, _ in column) for column in columns]
    key_width = sum(widths) + 0.2 * len(columns)
    rows = max(len(c) for c in columns)
    fig = plt.figure(figsize=(7.5 + key_width, max(6.5, 1.6 + rows * KEY_FONT * 1.45 / 72)), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[7.5, key_width])
    ax = fig.add_subplot(grid[0, 0], projection=axes_info["projection"])
    _scatter(ax, xs, ys, coarse, fine, colour, marker)
    ax.set_xlabel(axes_info["xlabel"])
    ax.set_ylabel(axes_info["ylabel"])
    if axes_info["projection"] == "mollweide":
        ax.grid(True, alpha=0.3)
    sample = f", {len(emb)} of {shown} points" if shown > len(emb) else f", {shown} points"
    ax.set_title(
        f"{title}\n{axes_info['name']}{sample}; colour: {level_names[0]}, marker: {level_names[-1]}", fontsize="medium"
    )
    key_title = level_names[0] if len(level_names) == 1 else f"{level_names[0]}: {level_names[-1]}"
    _draw_key(fig.add_subplot(grid[0, 1]), columns, {names[0][c]: colour[c] for c in colour}, key_title)
    return fig


def plot_training_curves(histories: dict[str, pd.DataFrame], collapse_spread: float = 0.1) -> Figure:
    """Training loss, validation mean silhouette and embedding spread per epoch for several runs.

    Keys name runs; 'experiment/seed' keys share a colour per experiment (one legend entry each).
    Frames have columns epoch, loss, val_silhouette and spread (older histories may lack it); the
    best validation epoch is marked, and spreads below `collapse_spread` are shaded as collapse.
    """
    groups = list(dict.fromkeys(key.split("/")[0] for key in histories))
    colour = dict(zip(groups, _colours(len(groups))))
    fig, (ax_loss, ax_sil, ax_spread) = plt.subplots(1, 3, figsize=(17, 4.5))
    for key, frame in histories.items():
        c = colour[key.split("/")[0]]
        ax_loss.plot(frame["epoch"], frame["loss"], color=c, alpha=0.8, lw=1.2)
        ax_sil.plot(frame["epoch"], frame["val_silhouette"], color=c, alpha=0.8, lw=1.2)
        if "spread" in frame:
            ax_spread.plot(frame["epoch"], frame["spread"], color=c, alpha=0.8, lw=1.2)
        if frame["val_silhouette"].notna().any():
            best = frame.loc[frame["val_silhouette"].idxmax()]
            ax_sil.plot(best["epoch"], best["val_silhouette"], "o", color=c, ms=5)
            if "spread" in frame:
                ax_spread.plot(best["epoch"], best["spread"], "o", color=c, ms=5)
    ax_spread.axhspan(0, collapse_spread, color="tab:red", alpha=0.12, lw=0)
    ax_spread.set_ylim(bottom=0)
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="mean loss per batch")
    ax_sil.set(
        title="Validation silhouette (mean over levels; dot: best epoch)", xlabel="epoch", ylabel="cosine silhouette"
    )
    ax_spread.set(
        title=f"Embedding spread (shaded: below {collapse_spread:g}, collapse)",
        xlabel="epoch",
        ylabel="mean pairwise distance, training sample",
    )
    for ax in (ax_loss, ax_sil, ax_spread):
        ax.grid(True, alpha=0.3)
    counts = {g: sum(1 for k in histories if k.split("/")[0] == g) for g in groups}
    handles = [
        Line2D([], [], color=colour[g], lw=2, label=f"{g} ({counts[g]} run{'s' * (counts[g] > 1)})") for g in groups
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_metric_bars(summary: pd.DataFrame, ncols: int = 3) -> Figure:
    """One panel per metric: mean over seeds per experiment, grouped by split and level, with the
    seed standard deviation as error bars (summary columns as rbl.summary.summarise). NaN: 'n/a'."""
    metrics = sorted(
        summary["metric"].unique(), key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m)
    )
    experiments = list(dict.fromkeys(summary["experiment"]))
    colour = dict(zip(experiments, _colours(len(experiments))))
    several_datasets = summary["dataset"].nunique() > 1
    ncols = max(1, min(ncols, len(metrics)))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows + 0.8), squeeze=False, layout="constrained"
    )
    width = 0.8 / max(1, len(experiments))
    for ax, metric in zip(axes.flat, metrics):
        part = summary[summary["metric"] == metric]
        key_cols = ["dataset", "split", "level"] if several_datasets else ["split", "level"]
        groups = list(dict.fromkeys(map(tuple, part[key_cols].to_numpy())))
        for e, experiment in enumerate(experiments):
            rows = part[part["experiment"] == experiment].set_index(key_cols)
            for g, group in enumerate(groups):
                x = g + (e - (len(experiments) - 1) / 2) * width
                if group not in rows.index:
                    continue
                row = rows.loc[group]
                row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                if np.isnan(row["mean"]):
                    ax.text(x, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize="small", color="0.35")
                    continue
                std = row["std"] if not np.isnan(row["std"]) else 0.0
                ax.bar(x, row["mean"], width, yerr=std, color=colour[experiment], capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(
            range(len(groups)),
            ["\n".join(g) for g in groups],
            fontsize="small",
            rotation=30,
            ha="right",
            rotation_mode="anchor",
        )
        ax.axhline(0, color="0.3", lw=0.6)
        better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{metric} ({better})", fontsize="medium")
        ax.set_ylabel(metric)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    seeds = summary.groupby("experiment")["n_seeds"].max()
    handles = [
        Line2D(
            [], [], color=colour[e], lw=8, label=f"{e} ({int(seeds.get(e, 0))} seed{'s' * (int(seeds.get(e, 0)) != 1)})"
        )
        for e in experiments
    ]
    datasets = ", ".join(sorted(summary["dataset"].unique()))
    fig.suptitle(f"{datasets}: mean over seeds, error bars one standard deviation over seeds")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    return fig
