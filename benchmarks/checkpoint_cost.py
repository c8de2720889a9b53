"""What saving training state costs at the paper's TUT schedule: ms per epoch with and without it.

    .venv/bin/python benchmarks/checkpoint_cost.py [--epochs 200] [--rounds 3] [--every 1 10 100]

Data and model as benchmarks/train_speed.py (TUT 2016 example features, or --synthetic: 480
training clips, 40 batches of 12 per epoch, one linear layer 128 -> 3, SGD, RbL edge target).
Early stopping is off, so every epoch runs.

- baseline: `rbl.train.fit` without a resume file (no state saved), measured in the same run.
- ours: `fit` with `ResumeFile(every=N)`: the whole state (model, optimiser, best model, history,
  generators) written atomically every N epochs.
Runs alternate in rounds (baseline, every N, ...) and the minimum over rounds is printed beside the
median, since the machine is shared. A save grows with the history (one row per epoch); the cost of
one save with the full 8000-row history of the schedule is timed on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import SCHEDULE, load  # noqa: E402

from rbl.experiment import TrainSettings  # noqa: E402
from rbl.model import Embedder  # noqa: E402
from rbl.train import RESUME_FORMAT, ResumeFile, fit, make_optimizer  # noqa: E402


def save_seconds(folder: Path, settings: TrainSettings, repeats: int = 50) -> float:
    """Median time of one save of the TUT model's state with a full 8000-epoch history."""
    model = Embedder(128, 3, ())
    optimizer = make_optimizer(settings, model.parameters())
    model(torch.zeros(2, 128)).sum().backward()
    optimizer.step()
    state = {
        "format": RESUME_FORMAT,
        "key": "0" * 64,
        "epoch": SCHEDULE - 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_state": dict(model.state_dict()),
        "best_epoch": 1,
        "best_score": 0.1,
        "warned": False,
        "history": torch.from_numpy(np.zeros((SCHEDULE, 4))),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": "{}",
    }
    resume = ResumeFile(folder / "state.pt", 1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        resume.save(state)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    name, xt, yt, xv, yv = load(args.synthetic)
    print(f"data: {name}; train {xt.shape}; {args.epochs} epochs x {args.rounds} rounds, torch {torch.__version__}")
    settings = TrainSettings(
        target="edge",
        optimizer="sgd",
        lr=1e-5,
        batch_size=12,
        max_epochs=args.epochs,
        patience=args.epochs,
        out_dim=3,
        hidden=(),
    )
    cpu = torch.device("cpu")
    fit(xt, yt, xv, yv, TrainSettings(target="edge", max_epochs=2, out_dim=3, hidden=()), 0, cpu, progress=False)
    times: dict[str, list[float]] = {"baseline (no saves)": [], **{f"every {n}": [] for n in args.every}}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for label in times:
                every = int(label.split()[1]) if label.startswith("every") else None
                resume = ResumeFile(Path(tmp) / f"{label}.pt", every) if every else None
                start = time.perf_counter()
                fit(xt, yt, xv, yv, settings, 0, cpu, progress=False, resume=resume)
                times[label].append((time.perf_counter() - start) / args.epochs)
                if resume:
                    resume.remove()  # as `rbl train` does once its outputs are written
        one_save = save_seconds(Path(tmp), settings)
    base = min(times["baseline (no saves)"])
    print(f"\n{'':20} {'ms/epoch min':>13} {'median':>8} {'overhead (min)':>15}")
    for label, values in times.items():
        print(
            f"{label:20} {min(values) * 1e3:13.2f} {statistics.median(values) * 1e3:8.2f} "
            f"{(min(values) / base - 1) * 100:14.1f}%"
        )
    print(
        f"\none save with the schedule's full {SCHEDULE}-row history: {one_save * 1e3:.2f} ms "
        f"({one_save / base * 100:.0f}% of an epoch)"
    )


if __name__ == "__main__":
    main()
