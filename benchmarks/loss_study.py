"""Compare training variants on a dataset the workflow has prepared: silhouette per split and level.

The study behind the RbL defaults (docs/ARCHITECTURE.md, "Why the gap target"). It trains every
variant x seed with `rbl.train.fit` on the workflow's own normalised features and splits (so the
figures are those the workflow would give) and prints mean ± std over seeds of the cosine
silhouette of every split and level, InitEmb (the features) first.

    python benchmarks/loss_study.py results/instruments --seeds 0 1 2 \
        --variant 'edge: target=edge' --variant 'gap: target=gap margin=0.2'

A variant is `name: key=value ...` over the keys of an experiment (config/README.md); values
not given come from --base (default: the RbL experiment of config/config.yaml as the schema
fills it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from rbl.data import level_codes, load_taxonomy, read_csv
from rbl.experiment import TrainSettings
from rbl.metrics import silhouette_per_level
from rbl.model import embedding_size
from rbl.taxonomy import shuffle_leaves
from rbl.train import fit, load_model

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("val", "test_seen", "test_unseen")


def parse_variant(text: str, base: dict) -> tuple[str, TrainSettings]:
    name, _, rest = text.partition(":")
    values = dict(base)
    for item in rest.split():
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = set(values) - fields
    if unknown:
        raise SystemExit(f"variant {name!r}: unknown keys {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    return name.strip(), TrainSettings(**values)


def base_settings(config: Path, experiment: str) -> dict:
    """An experiment of a config with the schema's defaults filled in."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    values = {k: v["default"] for k, v in props.items() if "default" in v}
    values.update(yaml.safe_load(config.read_text())["experiments"][experiment])
    return values


def silhouettes(emb: np.ndarray, labels: np.ndarray, split: np.ndarray, levels: list[str]) -> dict:
    out = {}
    for name in SPLITS:
        mask = split == name
        if mask.sum() < 3:
            continue
        values = silhouette_per_level(torch.as_tensor(emb[mask]), torch.as_tensor(labels[mask]))
        for level, (value, _) in zip(levels, values):
            out[(name, level)] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results/<dataset> of a workflow run (normalise done)")
    parser.add_argument("--variant", action="append", required=True, help="'name: key=value ...'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    parser.add_argument("--base", default="RbL", help="experiment of --config the variants start from")
    parser.add_argument("--out", type=Path, help="also write the per-seed figures to this CSV")
    args = parser.parse_args(argv)

    taxonomy = load_taxonomy(args.results / "taxonomy.csv")
    manifest = read_csv(args.results / "manifest.csv")
    labels = level_codes(manifest, taxonomy)
    split = read_csv(args.results / "splits.csv")["split"].to_numpy()
    norm = next((args.results / "features").glob("*.norm.npz"))
    x = np.load(norm)["x"]
    levels = list(taxonomy.levels)
    leaves = len(taxonomy.leaf_codes())
    base = base_settings(args.config, args.base)
    variants = [parse_variant(v, base) for v in args.variant]
    torch.set_num_threads(1)
    rows = [
        {"variant": "InitEmb", "seed": 0, "split": s, "level": lv, "silhouette": v, "epoch": 0}
        for (s, lv), v in silhouettes(x, labels, split, levels).items()
    ]
    train, val = split == "train", split == "val"
    for name, settings in variants:
        if settings.out_dim == "auto":
            settings = dataclasses.replace(settings, out_dim=embedding_size(leaves, x.shape[1]))
        for seed in args.seeds:
            y = labels
            if settings.hierarchy == "random":
                y = shuffle_leaves(labels, taxonomy.leaf_codes(), np.random.default_rng([seed, 1]))
            start = time.perf_counter()
            checkpoint, _ = fit(x[train], y[train], x[val], y[val], settings, seed, torch.device("cpu"), progress=False)
            with torch.no_grad():
                emb = load_model(checkpoint, torch.device("cpu"))(torch.as_tensor(x, dtype=torch.float32)).numpy()
            for (s, lv), v in silhouettes(emb, labels, split, levels).items():
                rows.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "split": s,
                        "level": lv,
                        "silhouette": v,
                        "epoch": checkpoint["epoch"],
                    }
                )
            spread = checkpoint["spread"]
            print(
                f"{name} seed {seed}: best epoch {checkpoint['epoch']}, val {checkpoint['val_silhouette']:.3f}, "
                f"spread {spread:.3f}, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    summary = table.groupby(["variant", "split", "level"], sort=False)["silhouette"].agg(["mean", "std"])
    cells = summary.apply(
        lambda r: f"{r['mean']:.3f}" + ("" if np.isnan(r["std"]) else f" ± {r['std']:.3f}"), axis=1
    ).unstack(["split", "level"])
    cells.columns = [f"{s} {lv}" for s, lv in cells.columns]
    print(cells.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
