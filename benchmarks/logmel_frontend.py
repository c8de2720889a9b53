"""The `logmel` extractor's frontend: numpy (rbl.logmel, what extraction runs) against the torch frontend.

Both frame the same clips into log-mel frames on the CPU, alternating within each round: ours one
clip at a time, as extraction calls it (`logmel_frames` per piece); the baseline, the torch
frontend the VGGish CNN runs on (`LogMelFrontend.clip_logmel`, every clip in one call, torch's
default threads). Also timed: importing torch in a fresh interpreter, which the numpy path spares
every extract job that computes a clip. Prints the median over rounds and the largest difference.

    python benchmarks/logmel_frontend.py                  # 64 clips of 10 s, 5 rounds
    python benchmarks/logmel_frontend.py --clips 8 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from rbl.logmel import SAMPLE_RATE, frames_in, logmel_frames
from rbl.vggish.frontend import LogMelFrontend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n = int(args.seconds * SAMPLE_RATE)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(args.clips)]
    frames = [frames_in(len(w)) for w in waves]
    torch_frontend = LogMelFrontend()
    ours, baseline = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        mine = np.concatenate([logmel_frames(w, k) for w, k in zip(waves, frames)])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.inference_mode():
            theirs = torch_frontend.clip_logmel([torch.from_numpy(w) for w in waves], frames).numpy()
        baseline.append(time.perf_counter() - start)
    imports = []
    timing = "import time; s = time.perf_counter(); import torch; print(time.perf_counter() - s)"
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", timing],
            capture_output=True,
            text=True,
            check=True,
        )
        imports.append(float(out.stdout))
    print(f"{args.clips} clips of {args.seconds:g} s, {len(mine)} frames; median of {args.rounds} rounds")
    print(f"  ours (numpy, rbl.logmel):       {statistics.median(ours):.3f} s")
    print(f"  baseline (torch LogMelFrontend, {torch.get_num_threads()} threads): {statistics.median(baseline):.3f} s")
    print(f"  largest difference of a log-mel value: {float(np.abs(mine - theirs).max()):.2e}")
    print(f"  `import torch` in a fresh interpreter (spared by ours): median of 3 {statistics.median(imports):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
