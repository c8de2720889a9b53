"""`rbl plot-embeddings`: a picture of one split's embeddings."""

from __future__ import annotations

import argparse

from rbl.data import EVAL_SPLITS
from rbl.io import load_array, read_labels, read_splits, save_figure

HELP = "picture of one split's embeddings"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embeddings", required=True, help="embeddings of embed (.npz)")
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--taxonomy", required=True, help="taxonomy CSV of ingest")
    p.add_argument("--splits", required=True, help="splits CSV of the split stage")
    p.add_argument("--split", required=True, choices=EVAL_SPLITS, help="the split to draw")
    p.add_argument("--title", required=True, help="title of the picture")
    p.add_argument("--out", required=True, help="image to write (.png)")


def class_names(taxonomy_path: str) -> tuple[list[list[str]], list[str]]:
    """Per level, the names of its classes in code order; and the level names."""
    from rbl.data import load_taxonomy

    taxonomy = load_taxonomy(taxonomy_path)
    names = [[node[-1] for node in taxonomy.nodes(level)] for level in range(taxonomy.depth)]
    return names, list(taxonomy.levels)


def run(args: argparse.Namespace) -> None:
    from rbl.plots import plot_embeddings

    manifest, labels, _ = read_labels(args.manifest, args.taxonomy)
    split = read_splits(manifest, args.splits)
    emb = load_array(args.embeddings, "embeddings")
    names, levels = class_names(args.taxonomy)
    mask = split == args.split
    if mask.any():
        fig = plot_embeddings(emb[mask], labels[mask], names, levels, args.title)
    else:  # e.g. a dataset without a test split: say so in the picture rather than fail the run
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, f"{args.title}\nsplit '{args.split}' holds no clips", ha="center", va="center")
        ax.set_axis_off()
    save_figure(fig, args.out)
