"""Peak memory and time of evaluate_embeddings on 100,000 embeddings of 128-d (a 10 x 10 taxonomy).

Splits: 60k train, 20k val, 10k test_seen and 10k test_unseen (fine class 9 of every family held out).
Each measurement runs in a fresh subprocess and reads its peak resident set size
(resource.getrusage ru_maxrss), so one cannot inflate the other:

- ours: evaluate_embeddings on the full set (the whole process: Python, torch, data and metrics);
- naive baseline: the full cosine distance matrix of `--naive-n` examples as scikit-learn's
  pairwise_distances builds it (what an unchunked silhouette, kNN or mAP@R needs), extrapolated
  quadratically to the 100,000 examples, beside the bare size of a float32 100k x 100k matrix.

Usage: python benchmarks/metrics_memory.py [--n 100000] [--naive-n 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

LEVELS = ["family", "instrument"]


def make_data(n: int, dim: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random embeddings with a weak class signal, 10 families x 10 instruments, and the four splits."""
    rng = np.random.default_rng(seed)
    fine = rng.integers(0, 100, size=n)
    coarse = fine // 10
    emb = (
        0.25 * rng.normal(size=(10, dim))[coarse] + 0.25 * rng.normal(size=(100, dim))[fine] + rng.normal(size=(n, dim))
    ).astype(np.float32)
    split = np.empty(n, dtype=object)
    unseen = fine % 10 == 9
    split[unseen] = "test_unseen"
    seen = np.flatnonzero(~unseen)
    order = rng.permutation(seen)
    n_train, n_val = int(0.6 * n), int(0.2 * n)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test_seen"
    return emb, np.stack([coarse, fine], axis=1), split.astype(str)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def part_ours(n: int, threads: int) -> dict:
    import torch

    from rbl.evaluation import evaluate_embeddings

    torch.set_num_threads(threads)
    emb, labels, split = make_data(n)
    before = peak_mib()
    start = time.perf_counter()
    table = evaluate_embeddings(emb, labels, split, LEVELS)
    seconds = time.perf_counter() - start
    counts = {s: int((split == s).sum()) for s in np.unique(split)}
    return {
        "peak_mib": peak_mib(),
        "peak_before_mib": before,
        "seconds": seconds,
        "splits": counts,
        "table": table.drop(columns="reason").to_dict(orient="records"),
    }


def part_naive(n: int) -> dict:
    from sklearn.metrics import pairwise_distances

    emb, _, _ = make_data(n)
    before = peak_mib()
    start = time.perf_counter()
    dist = pairwise_distances(emb, metric="cosine")
    seconds = time.perf_counter() - start
    return {"peak_mib": peak_mib(), "peak_before_mib": before, "seconds": seconds, "matrix_mib": dist.nbytes / 2**20}


def run_part(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--part", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "ours":
        print(json.dumps(part_ours(args.n, args.threads)))
        return
    if args.part == "naive":
        print(json.dumps(part_naive(args.naive_n)))
        return

    ours = run_part(["--part", "ours", "--n", str(args.n), "--threads", str(args.threads)])
    naive = run_part(["--part", "naive", "--naive-n", str(args.naive_n)])
    scale = (args.n / args.naive_n) ** 2
    naive_growth = naive["peak_mib"] - naive["peak_before_mib"]
    print(f"evaluate_embeddings, N={args.n:,} x 128 (splits {ours['splits']}), {args.threads} threads:")
    print(
        f"  peak RSS {ours['peak_mib']:,.0f} MiB for the whole process "
        f"({ours['peak_before_mib']:,.0f} MiB before evaluating: Python, torch, data); {ours['seconds']:.1f} s"
    )
    print(f"naive baseline: scikit-learn pairwise_distances(cosine) on N={args.naive_n:,}:")
    print(
        f"  peak RSS grows {naive_growth:,.0f} MiB (matrix {naive['matrix_mib']:,.0f} MiB float64) in "
        f"{naive['seconds']:.1f} s -> x{scale:,.0f} at N={args.n:,}: ~{naive_growth * scale / 1024:,.0f} GiB"
    )
    print(f"  a float32 N x N matrix at N={args.n:,} alone: {args.n**2 * 4 / 2**30:,.1f} GiB")
    rows = [r for r in ours["table"] if r["split"] == "test_seen"]
    print("test_seen rows (random embeddings with a weak class signal):")
    for r in rows:
        k = "" if r["k"] != r["k"] else f" k={int(r['k'])}"
        print(f"  {r['level']:>10} {r['metric']:<17} {r['value']:.3f}{k}")


if __name__ == "__main__":
    main()
