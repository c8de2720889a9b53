"""Forward+backward time of RankBasedLoss(target="edge") against a per-pair baseline written like the authors' code.

    .venv/bin/python benchmarks/rbl_speed.py [--threads 1] [--batches 12 64 256 1024] [--rounds 5]

Contenders: `RankBasedLoss()` (cosine, edge target; on CPU its compiled kernel), the same loss's
device-generic torch path (`forward_torch`, what runs on GPU), and the per-pair baseline in
authors_style.py. Labels: 2 levels, 3 coarse x 3 fine classes as in the paper, leaves drawn
uniformly; embeddings (N, 3) like the paper's model output. Each timed call is
`loss(x, labels).backward()` on a fresh graph, cycling through 16 random batches. The contenders
alternate in rounds so that load from other processes hits all alike. The table gives medians
over all calls and, under "(min)", minima (the uncontended speed); speed-up is baseline median
over ours. On CUDA, when available, the same is timed with torch.cuda.synchronize() before each
clock read.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from authors_style import rank_based_loss_per_pair  # noqa: E402

from rbl.losses import RankBasedLoss  # noqa: E402

TARGETS_MS = {12: 0.18, 256: 0.41}  # from the issue: 10x and 1000x faster than the authors' code
POOL = 16  # different random batches per batch size
WIDTHS = (6, 9, 7, 11, 12, 9, 9, 10)  # table columns


def batches(n: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(n)
    out = []
    for _ in range(POOL):
        leaf = torch.randint(0, 9, (n,), generator=gen)
        labels = torch.stack([leaf // 3, leaf], dim=1)
        x = torch.randn(n, 3, generator=gen)
        out.append((x.to(device).requires_grad_(True), labels.to(device)))
    return out


def time_calls(fn, pool, reps: int, sync) -> list[float]:
    """Seconds per call of fn(x, labels).backward(), cycling through the pool."""
    out = []
    for i in range(reps):
        x, labels = pool[i % len(pool)]
        x.grad = None
        sync()
        start = time.perf_counter()
        fn(x, labels).backward()
        sync()
        out.append(time.perf_counter() - start)
    return out


def measure(n: int, device: str, rounds: int, reps: dict[str, int]) -> dict[str, list[float]]:
    """Milliseconds per call of each contender, alternating contenders round by round."""
    pool = batches(n, device)
    loss = RankBasedLoss(target="edge")  # the target the baseline computes (the gap target costs the same)
    contenders = {"ours": loss, "torch": loss.forward_torch, "baseline": rank_based_loss_per_pair}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for x, labels in pool[:2]:
        values = {name: fn(x, labels).item() for name, fn in contenders.items()}
        if not np.allclose(list(values.values()), values["ours"], rtol=1e-4, atol=1e-6):
            raise AssertionError(f"batch {n}: the implementations disagree: {values}")
    for name, fn in contenders.items():  # warm-up
        time_calls(fn, pool, min(reps[name], 2 * POOL), sync)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name] += [t * 1e3 for t in time_calls(fn, pool, reps[name], sync)]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and NumPy BLAS threads (default 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[12, 64, 256, 1024])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # NumPy's BLAS too: a second thread on a busy core stalls it
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
        f"torch and BLAS threads {torch.get_num_threads()}, nproc {os.cpu_count()}"
    )
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
        print(f"\n{device}: {name}")
        header = ["batch", "ours ms", "(min)", "torch path", "baseline ms", "(min)", "speed-up", "target ms"]
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, WIDTHS)) + "  note")
        for n in args.batches:
            slow = n * (n - 1) // 2 > 100_000
            reps = {
                "ours": 400 if n <= 256 else 40,
                "torch": 100 if n <= 256 else 5,
                "baseline": 2 if slow else max(1, 2000 // n),
            }
            t = measure(n, device, 1 if slow else args.rounds, reps)
            ours, base = statistics.median(t["ours"]), statistics.median(t["baseline"])
            target = TARGETS_MS.get(n) if device == "cpu" else None
            verdict = "" if target is None else f"{target:.2f} {'met' if ours <= target else 'missed'}"
            note = f"baseline from only {len(t['baseline'])} calls" if slow else ""
            print(
                f"{n:>6} {ours:>9.3f} {min(t['ours']):>7.3f} {statistics.median(t['torch']):>11.3f} {base:>12.2f}"
                f" {min(t['baseline']):>9.2f} {base / ours:>8.0f}x {verdict:>10}  {note}"
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
