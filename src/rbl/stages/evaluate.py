"""`rbl evaluate`: metrics of one run's embeddings per taxonomy level and split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rbl import __version__
from rbl.atomic import write_text
from rbl.errors import InputError
from rbl.io import load_array, read_labels, read_splits, require_finite

HELP = "metrics per taxonomy level and split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embeddings", required=True, help="embeddings of embed (.npz)")
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--taxonomy", required=True, help="taxonomy CSV of ingest")
    p.add_argument("--splits", required=True, help="splits CSV of the split stage")
    p.add_argument("--features-info", required=True, help="extraction record (.json): the extractor that ran")
    p.add_argument("--dataset", required=True, help="dataset name, recorded in the result")
    p.add_argument("--experiment", required=True, help="experiment name, recorded in the result")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--seed", type=int, required=True, help="the run's seed (also seeds the metrics' sampling)")


def run(args: argparse.Namespace) -> None:
    from rbl.data import SKIPPED
    from rbl.evaluation import evaluate_embeddings

    manifest, labels, levels = read_labels(args.manifest, args.taxonomy)
    split = read_splits(manifest, args.splits)
    emb = load_array(args.embeddings, "embeddings")
    if len(emb) != len(manifest):
        raise InputError(f"{args.embeddings}: {len(emb)} rows, the manifest {len(manifest)}; rerun embed")
    require_finite(
        emb,
        split,
        manifest,
        args.embeddings,
        "either the model diverged (lower the experiment's lr) or the clips were skipped at "
        "extraction after the splits were made (rerun the split stage)",
    )
    info = json.loads(Path(args.features_info).read_text())
    table = evaluate_embeddings(emb, labels, split, levels, seed=args.seed)
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in table.to_dict("records")
    ]
    result = {
        "dataset": args.dataset,
        "experiment": args.experiment,
        "seed": args.seed,
        "extractor": info["extractor"],
        "rbl_version": __version__,
        "skipped": int((split == SKIPPED).sum()),
        "metrics": rows,
    }
    write_text(args.out, json.dumps(result, indent=2))
