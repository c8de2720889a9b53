"""Forward+backward time of our RbL against the authors' published compute_rank_based_loss, interleaved.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/rbl_speed.py [--batches 12 256] [--rounds 7]

Contenders, each timed as `loss(x, labels).backward()` from the model's last layer output x (N, 3)
(before its L2 normalisation, which every contender applies):

- reference: `RankBasedLoss(target="reference")`, our implementation of the authors' target (the
  device-generic torch path), so "authors / reference" compares like with like;
- gap: `RankBasedLoss()`, the default target (on CPU, the compiled kernel), for information: it is
  a different loss, the one the workflow trains with;
- authors: authors_rbl.py, the transcription of the published code, one training step's loss as
  train_RbL computes it (the dense rank map from the label strings, pair by pair, then
  compute_rank_based_loss). Each contender gets its labels in its own form (integer codes, or the
  authors' strings), prepared outside the timing.

Labels: 2 levels, 3 coarse x 3 fine classes as in the paper, leaves drawn uniformly. The script
checks that reference and authors give the same value, then runs rounds; in every round each
contender runs its calls in turn (the order rotating), cycling through 16 random batches, so load
from other processes hits all alike. The table gives medians over all calls, minima under "(min)",
speed-ups as median over median, and the 1-minute load average before and after each row.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before torch and NumPy load their thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rbl.losses import RankBasedLoss  # noqa: E402

from authors_rbl import authors_batch_loss, label_strings  # noqa: E402

TARGETS_MS = {12: 0.18, 256: 0.41}  # from the issue: 10x and 1000x faster than the authors' code
POOL = 16  # different random batches per batch size
NUMBER_OF_RANKS = 4  # the authors' setting for 2 levels (run_example.py)


def batches(n: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    gen = torch.Generator().manual_seed(n)
    out = []
    for _ in range(POOL):
        leaf = torch.randint(0, 9, (n,), generator=gen)
        labels = torch.stack([leaf // 3, leaf], dim=1)
        x = torch.randn(n, 3, generator=gen)
        out.append((x.to(device).requires_grad_(True), labels.to(device), label_strings(labels)))
    return out


def contenders() -> dict:
    """name -> fn(x, integer labels, label strings) returning the loss."""
    reference, gap = RankBasedLoss(target="reference"), RankBasedLoss()
    return {
        "reference": lambda x, labels, strings: reference(x, labels),
        "gap": lambda x, labels, strings: gap(x, labels),
        "authors": lambda x, labels, strings: authors_batch_loss(x, strings, NUMBER_OF_RANKS),
    }


def time_calls(fn, pool, reps: int, sync) -> list[float]:
    """Seconds per call of fn(...).backward(), cycling through the pool."""
    out = []
    for i in range(reps):
        x, labels, strings = pool[i % len(pool)]
        x.grad = None
        sync()
        start = time.perf_counter()
        fn(x, labels, strings).backward()
        sync()
        out.append(time.perf_counter() - start)
    return out


def measure(n: int, device: str, rounds: int, reps: dict[str, int]) -> dict[str, list[float]]:
    """Milliseconds per call of each contender, the contenders interleaved within every round."""
    pool = batches(n, device)
    fns = contenders()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for x, labels, strings in pool[:2]:
        ours, theirs = fns["reference"](x, labels, strings).item(), fns["authors"](x, labels, strings).item()
        if not np.isclose(ours, theirs, rtol=1e-4, atol=1e-6):
            raise AssertionError(f"batch {n}: reference target {ours} but the authors' function {theirs}")
    for name, fn in fns.items():  # warm-up
        time_calls(fn, pool, min(reps[name], 4), sync)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for k in range(rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            times[name] += [t * 1e3 for t in time_calls(fns[name], pool, reps[name], sync)]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and NumPy BLAS threads (default 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[12, 64, 256])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # NumPy's BLAS too: a second thread on a busy core stalls it
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
        f"torch and BLAS threads {torch.get_num_threads()}, OMP_NUM_THREADS {os.environ['OMP_NUM_THREADS']}, "
        f"MKL_NUM_THREADS {os.environ['MKL_NUM_THREADS']}, nproc {os.cpu_count()}, rounds {args.rounds}"
    )
    header = (
        "batch",
        "gap ms",
        "(min)",
        "reference ms",
        "(min)",
        "authors ms",
        "(min)",
        "authors/ref",
        "authors/gap",
        "gap target",
        "load 1-min",
    )
    widths = (5, 8, 7, 12, 7, 10, 8, 11, 11, 11, 11)
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
        print(f"\n{device}: {name}")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths)))
        for n in args.batches:
            pairs = n * (n - 1) // 2
            reps = {
                "gap": 200 if n <= 256 else 20,
                "reference": 50 if n <= 256 else 4,
                "authors": max(1, 6000 // pairs),
            }
            load_before = os.getloadavg()[0]
            t = measure(n, device, args.rounds, reps)
            load_after = os.getloadavg()[0]
            med = {k: statistics.median(v) for k, v in t.items()}
            low = {k: min(v) for k, v in t.items()}
            target = TARGETS_MS.get(n) if device == "cpu" else None
            verdict = "-" if target is None else f"{target:.2f} {'met' if med['gap'] <= target else 'missed'}"
            print(
                f"{n:>5} {med['gap']:>8.3f} {low['gap']:>7.3f} {med['reference']:>12.3f} {low['reference']:>7.3f}"
                f" {med['authors']:>10.2f} {low['authors']:>8.2f} {med['authors'] / med['reference']:>10.0f}x"
                f" {med['authors'] / med['gap']:>10.0f}x {verdict:>11} {load_before:>5.2f}-{load_after:<5.2f}"
                f"  ({len(t['authors'])} authors calls)"
            )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
