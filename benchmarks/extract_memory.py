"""Peak host memory of VGGish extraction through rbl.features.extract, against holding the dataset at once,
and on long clips against the whole-clip path.

    .venv/bin/python benchmarks/extract_memory.py [--clips 10000] [--seconds 10] [--steps 500 2000]
        [--baseline-clips 500] [--batch-clips 32] [--workers 2] [--workdir DIR]
    .venv/bin/python benchmarks/extract_memory.py --long-clips 2 [--long-hours 1] [--workdir DIR]

Writes `--clips` 16 kHz mono 16-bit WAV files of `--seconds` each (noise plus tones) and full-size
generated VGGish weights into a temporary folder (or `--workdir`, where files already written are
reused), then measures, each in a fresh process so that one cannot inflate another:

- ours: `rbl.features.extract` on the first N clips for every N in `--steps` and `--clips`, with
  an empty cache, so every clip is decoded, computed and written. Reported: the process's peak
  resident set size (resource.getrusage ru_maxrss: Python, torch, the weights, everything), its
  RSS before extracting, and its RSS sampled every 0.5 s during the run (at 25/50/75/100 % of the
  run's time), to show that memory stays flat as clips go by.
- baseline: what holding the dataset would cost. The first `--baseline-clips` clips are decoded
  into a list (rbl.audio.load, float32 at 16 kHz); the growth of the process's RSS while it holds
  them, per clip, is scaled to `--clips` (measured on a fraction and scaled, not at full size).

Target (issue 6): extracting 10,000 clips of 10 s peaks under 2 GB of host memory.

With `--long-clips N` the script instead writes N clips of `--long-hours` each (16 kHz mono 16-bit
WAV, noise plus tones, written block by block) and measures, each in a fresh process:

- ours: `rbl.features.extract` on the N clips (VGGish, empty cache, `--batch-clips`), which decodes,
  frames and pools long clips piece by piece. Peak RSS as above.
- baseline: the whole-clip path that extraction ran before, on the same clips in one batch: each
  file read whole (soundfile) and resampled at once (soxr), then `clip_examples` of the whole
  clips and the same CNN and pooling (what `extract` did with every clip of a batch).

Target (issue 13): 1-hour clips peak under 2 GB, whatever their number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic  # noqa: E402

TARGET_BYTES = 2 * 10**9  # "2 GB"
MiB = 2**20


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler(threading.Thread):
    """Reads this process's RSS every `every` seconds until stopped: [(seconds since start, bytes)]."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [], threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.perf_counter() - self.start_time, current_rss()))
            self.done.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self.done.set()
        self.join()
        self.samples.append((time.perf_counter() - self.start_time, current_rss()))
        return self.samples


def part_ours(
    paths: list[str], weights_dir: str, cache: str, batch_clips: int, workers: int, keep: bool = False
) -> dict:
    from rbl.extraction import ExtractSettings, extract
    from rbl.fingerprint import file_sha256

    digests = [file_sha256(p) for p in paths]  # the ingest stage's job; not timed
    settings = ExtractSettings(
        extractor="vggish",
        weights_dir=weights_dir,
        download=False,
        verify=False,
        batch_clips=batch_clips,
        workers=workers,
    )
    before = current_rss()
    sampler = Sampler()
    sampler.start()
    start = time.perf_counter()
    feats, info = extract(paths, digests, settings, Path(cache), progress=False)
    seconds = time.perf_counter() - start
    samples = sampler.stop()
    assert info["computed"] == len(paths) and feats.shape == (len(paths), 128), info
    result = {"clips": len(paths), "seconds": seconds, "peak": peak_rss(), "before": before, "samples": samples}
    return {**result, "feats": feats} if keep else result


def part_baseline(paths: list[str]) -> dict:
    from rbl import audio

    before_peak, before = peak_rss(), current_rss()
    waves = [audio.load(p) for p in paths]
    return {
        "clips": len(waves),
        "peak": peak_rss(),
        "before_peak": before_peak,
        "before": before,
        "held": current_rss(),
        "samples_bytes": sum(w.nbytes for w in waves),
    }


def write_long_clip(path: Path, seconds: float, seed: int, rate: int = 16000, block_seconds: int = 60) -> None:
    """One long 16-bit WAV (noise plus two tones), written a minute at a time so writing holds one minute."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    f1, f2 = 100.0 + 37.0 * seed, 1000.0 + 113.0 * seed
    total = int(round(seconds * rate))
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for start in range(0, total, block_seconds * rate):
            t = np.arange(start, min(start + block_seconds * rate, total)) / rate
            x = 0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t) + 0.1 * rng.standard_normal(len(t))
            handle.write(np.clip(x, -1.0, 1.0).astype(np.float32))


def whole_clip(path: str):
    """The decode of before: the whole file read at once, averaged to mono, resampled at once."""
    import numpy as np
    import soundfile as sf
    import soxr

    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float32)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)


def part_long_baseline(paths: list[str], weights_dir: str) -> dict:
    import numpy as np
    import torch
    from whole_clip import clip_examples

    from rbl.vggish import load_extractor

    before = current_rss()
    sampler = Sampler()
    sampler.start()
    start = time.perf_counter()
    model = load_extractor(Path(weights_dir), download=False, verify=False)
    with torch.inference_mode():
        waves = [torch.from_numpy(whole_clip(p)) for p in paths]
        examples, index = clip_examples(waves)
        feats = model.pool(model(examples), index, len(waves)).numpy()
    seconds = time.perf_counter() - start
    samples = sampler.stop()
    np.save(Path(weights_dir).parent / "long_baseline.npy", feats)
    return {"clips": len(paths), "seconds": seconds, "peak": peak_rss(), "before": before, "samples": samples}


def part_long_ours(paths: list[str], weights_dir: str, cache: str, batch_clips: int, workers: int) -> dict:
    import numpy as np

    result = part_ours(paths, weights_dir, cache, batch_clips, workers, keep=True)
    np.save(Path(weights_dir).parent / "long_ours.npy", result.pop("feats"))
    return result


def long_clips(args: argparse.Namespace, root: Path) -> None:
    """Peak RSS of ours and of the whole-clip path on `--long-clips` clips of `--long-hours` each."""
    import numpy as np

    folder = root / "long"
    folder.mkdir(parents=True, exist_ok=True)
    seconds = args.long_hours * 3600
    start = time.perf_counter()
    for k in range(args.long_clips):
        path = folder / f"long{k:02d}_{seconds:g}s.wav"
        if not path.exists():
            write_long_clip(path, seconds, seed=k)
    if not (root / "weights").is_dir():
        synthetic.write_weights(root / "weights")
    print(
        f"{args.long_clips} WAV file(s) of {args.long_hours:g} h at 16 kHz ready in {folder} "
        f"({time.perf_counter() - start:.0f} s); load average {load_average()}",
        flush=True,
    )
    common = [
        "--workdir",
        str(root),
        "--long-clips",
        str(args.long_clips),
        "--long-hours",
        str(args.long_hours),
        "--batch-clips",
        str(args.batch_clips),
        "--workers",
        str(args.workers),
    ]
    print(
        "\n| path | clips | audio (h) | seconds | RSS before | RSS at 25 / 50 / 75 / 100 % of the run | peak RSS "
        "| load average after |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|")
    results = {}
    for part in ("long-ours", "long-baseline"):
        cache = tempfile.mkdtemp(prefix="cache_long_", dir=root)
        r = results[part] = run_part(["--part", part, "--cache", cache, *common])
        marks = " / ".join(f"{b / MiB:,.0f}" for b in at_fractions(r["samples"]))
        name = "ours (pieces)" if part == "long-ours" else "baseline (whole clips)"
        print(
            f"| {name} | {r['clips']} | {r['clips'] * args.long_hours:g} | {r['seconds']:.0f} "
            f"| {r['before'] / MiB:,.0f} MiB | {marks} MiB | {r['peak'] / MiB:,.0f} MiB | {load_average()} |",
            flush=True,
        )
    ours, base = np.load(root / "long_ours.npy"), np.load(root / "long_baseline.npy")
    peak = results["long-ours"]["peak"]
    print(
        f"\nours: peak RSS {peak / MiB:,.0f} MiB ({peak / 1e9:.2f} GB) on {args.long_clips} clip(s) of "
        f"{args.long_hours:g} h; baseline {results['long-baseline']['peak'] / 1e9:.2f} GB; target < 2 GB: "
        f"{'met' if peak < TARGET_BYTES else 'missed'}"
    )
    print(
        f"same pooled embeddings (quantised 0..255, means over {int(seconds // 0.96)} examples): max |difference| "
        f"{np.abs(ours - base).max():.3g}, values differing {(ours != base).sum()} of {ours.size}"
    )


def run_part(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def at_fractions(samples: list[tuple[float, int]], fractions=(0.25, 0.5, 0.75, 1.0)) -> list[int]:
    """RSS of the last sample taken at or before each fraction of the run's time."""
    end = samples[-1][0]
    return [max((s for s in samples if s[0] <= f * end), key=lambda s: s[0])[1] for f in fractions]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=10_000, help="clips in the largest run (the target is 10,000)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument(
        "--steps",
        type=int,
        nargs="*",
        default=[500, 2000],
        help="smaller runs, to show how memory grows with the clip count",
    )
    p.add_argument("--baseline-clips", type=int, default=500, help="clips decoded and held by the baseline")
    p.add_argument("--batch-clips", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", default="", help="keep the WAV files and weights here (reused between runs)")
    p.add_argument(
        "--long-clips",
        type=int,
        default=0,
        help="instead: this many long clips, ours against the whole-clip path (issue 13)",
    )
    p.add_argument("--long-hours", type=float, default=1.0, help="length of each long clip in hours")
    p.add_argument("--part", choices=["ours", "baseline", "long-ours", "long-baseline"], help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    if args.part in ("long-ours", "long-baseline"):
        root = Path(args.workdir)
        seconds = args.long_hours * 3600
        paths = [str(root / "long" / f"long{k:02d}_{seconds:g}s.wav") for k in range(args.long_clips)]
        if args.part == "long-ours":
            result = part_long_ours(paths, str(root / "weights"), args.cache, args.batch_clips, args.workers)
        else:
            result = part_long_baseline(paths, str(root / "weights"))
        print(json.dumps(result))
        return
    if args.part:
        root = Path(args.workdir)
        paths = [str(root / "wav" / f"clip{i:05d}.wav") for i in range(args.clips)]
        if args.part == "ours":
            result = part_ours(paths, str(root / "weights"), args.cache, args.batch_clips, args.workers)
        else:
            result = part_baseline(paths)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="rbl_extract_memory_") as tmp:
        root = Path(args.workdir or tmp)
        if args.long_clips:
            long_clips(args, root)
            return
        wav = root / "wav"
        have = len(list(wav.glob("clip*.wav"))) if wav.is_dir() else 0
        largest = max([args.clips, args.baseline_clips, *args.steps])
        start = time.perf_counter()
        if have < largest:
            synthetic.write_clips(wav, largest - have, args.seconds, 16000, start=have)
        if not (root / "weights").is_dir():
            synthetic.write_weights(root / "weights")
        print(
            f"{largest} WAV files of {args.seconds:g} s at 16 kHz ready in {root} "
            f"({time.perf_counter() - start:.0f} s); load average {load_average()}",
            flush=True,
        )
        common = [
            "--workdir",
            str(root),
            "--seconds",
            str(args.seconds),
            "--batch-clips",
            str(args.batch_clips),
            "--workers",
            str(args.workers),
        ]

        base = run_part(["--part", "baseline", "--clips", str(args.baseline_clips), *common])
        growth = base["held"] - base["before"]
        per_clip = growth / base["clips"]
        print(
            f"baseline: {base['clips']} clips decoded and held in a list: RSS grows {growth / MiB:,.0f} MiB "
            f"({per_clip / MiB:.2f} MiB per clip; the float32 samples alone are "
            f"{base['samples_bytes'] / base['clips'] / MiB:.2f} MiB per clip)",
            flush=True,
        )

        print(
            "\n| clips | audio (h) | seconds | clips/s | RSS before | RSS at 25 / 50 / 75 / 100 % of the run "
            "| peak RSS | load average after |"
        )
        print("|---:|---:|---:|---:|---:|---|---:|---|")
        results = []
        for n in sorted({*args.steps, args.clips}):
            cache = tempfile.mkdtemp(prefix=f"cache{n}_", dir=root)
            r = run_part(["--part", "ours", "--clips", str(n), "--cache", cache, *common])
            results.append(r)
            marks = " / ".join(f"{b / MiB:,.0f}" for b in at_fractions(r["samples"]))
            print(
                f"| {n:,} | {n * args.seconds / 3600:.2f} | {r['seconds']:.0f} | {n / r['seconds']:.2f} "
                f"| {r['before'] / MiB:,.0f} MiB | {marks} MiB | {r['peak'] / MiB:,.0f} MiB | {load_average()} |",
                flush=True,
            )

        largest_run = results[-1]
        print(
            f"\nours, {largest_run['clips']:,} clips: peak RSS {largest_run['peak'] / MiB:,.0f} MiB "
            f"({largest_run['peak'] / 1e9:.2f} GB); target < 2 GB at 10,000 clips: "
            f"{'met' if largest_run['peak'] < TARGET_BYTES else 'missed'}"
            + ("" if largest_run["clips"] >= 10_000 else f" at {largest_run['clips']:,} clips")
        )
        for n in sorted({args.clips, 10_000}):
            print(
                f"baseline scaled to {n:,} clips: the decoded waveforms alone take about "
                f"{per_clip * n / 2**30:,.1f} GiB ({per_clip / MiB:.2f} MiB per clip measured on "
                f"{base['clips']} clips, x {n:,}), before any model, examples or features"
            )


if __name__ == "__main__":
    main()
