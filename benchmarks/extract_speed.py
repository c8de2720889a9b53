"""End-to-end VGGish extraction speed from WAV files: rbl.features.extract against the per-file path.

    .venv/bin/python benchmarks/extract_speed.py [--clips 48] [--seconds 10] [--rates 16000 44100]
        [--rounds 3] [--batch-clips 32] [--workers 2] [--threads N] [--bf16-clips 16]

Contenders, on the same files and the same (generated, full-size) weights:

- ours: `rbl.features.extract` (threads decode and resample, the frontend and CNN run batched),
  with a fresh cache directory for every call so that every clip is computed and written.
- baseline: `torchvggish_style.py`, one file at a time as torchvggish does it: decode, resample
  (soxr, where torchvggish uses resampy), NumPy log-mel frontend, CNN + PCA on that file's
  examples, mean over the examples.

Both timings include loading the weights (ours loads them inside `extract`) and exclude hashing
the audio (the ingest stage computes the digests that `extract` takes). The contenders alternate,
so that load from other processes hits both alike; the table gives the median and the minimum over
rounds. x real time = seconds of audio / wall seconds.

The script checks that both give the same pooled embeddings (quantised, 0..255: an example whose
float32 and float64 frontends round to different sides of a quantisation step moves its clip's
mean by 1/examples), prints a breakdown of where each path spends its time, and prints the
relative error of pooled embeddings with the CNN in bfloat16 (torch.autocast on CPU) against
float32. No GPU here: the CPU bf16 figure stands in for the GPU's reduced precision.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from whole_clip import clip_examples  # noqa: E402

from rbl import audio  # noqa: E402
from rbl.extraction import ExtractSettings, extract  # noqa: E402
from rbl.fingerprint import file_sha256  # noqa: E402
from rbl.vggish import load_extractor  # noqa: E402

import synthetic  # noqa: E402
import torchvggish_style  # noqa: E402

TARGET_RATIO = 2.0  # issue 6, on this 2-core machine


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_ours(paths: list[str], digests: list[str], settings: ExtractSettings, cache: Path) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    feats, info = extract(paths, digests, settings, cache, progress=False)
    seconds = time.perf_counter() - start
    assert info["computed"] == len(set(digests)) and info["from_cache"] == 0, info
    return seconds, feats


def run_baseline(paths: list[str], weights: tuple[Path, Path]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    model = torchvggish_style.load(*weights)
    feats = torchvggish_style.extract_pooled(model, paths)
    return time.perf_counter() - start, feats


def agreement(ours: np.ndarray, base: np.ndarray) -> dict:
    diff = np.abs(ours.astype(np.float64) - base)
    rel = np.linalg.norm(ours - base, axis=1) / np.linalg.norm(base, axis=1)
    return {
        "max_abs": float(diff.max()),
        "max_rel": float(rel.max()),
        "clips_differing": int((diff.max(axis=1) > 0).sum()),
        "n": len(ours),
    }


def breakdown_ours(paths: list[str], weights_dir: Path, batch_clips: int) -> dict[str, float]:
    """Seconds per stage of our path, run one stage after another (no overlap) on the same clips."""
    model = load_extractor(weights_dir, download=False, verify=False)
    t = dict.fromkeys(("decode+resample", "frontend", "CNN", "PCA+pool"), 0.0)
    with torch.inference_mode():
        for k in range(0, len(paths), batch_clips):
            start = time.perf_counter()
            waves = [torch.from_numpy(audio.load(p)) for p in paths[k : k + batch_clips]]
            mid = time.perf_counter()
            t["decode+resample"] += mid - start
            examples, index = clip_examples(waves)
            t["frontend"] += time.perf_counter() - mid
            mid = time.perf_counter()
            raw = model.embed_raw(examples)
            t["CNN"] += time.perf_counter() - mid
            mid = time.perf_counter()
            model.pool(model.postprocessor(raw), index, len(waves))
            t["PCA+pool"] += time.perf_counter() - mid
    return t


def breakdown_baseline(paths: list[str], weights: tuple[Path, Path]) -> dict[str, float]:
    """Seconds per stage of the per-file path on the same clips."""
    model = torchvggish_style.load(*weights)
    t = dict.fromkeys(("decode+resample+frontend", "CNN", "PCA+pool"), 0.0)
    with torch.inference_mode():
        for path in paths:
            start = time.perf_counter()
            examples = torch.tensor(torchvggish_style.wavfile_to_examples(path))[:, None, :, :].float()
            mid = time.perf_counter()
            raw = torchvggish_style.VGG.forward(model, examples)
            end = time.perf_counter()
            model.postprocess(raw).mean(dim=0)
            t["decode+resample+frontend"] += mid - start
            t["CNN"] += end - mid
            t["PCA+pool"] += time.perf_counter() - end
    return t


def bf16_error(paths: list[str], weights_dir: Path) -> dict:
    """Relative error of pooled embeddings with the CNN under bf16 autocast vs float32, and both speeds.

    The frontend and the PCA postprocessor stay in float32 (autocast would otherwise run the mel
    and PCA matrix products in bf16); only the CNN runs in reduced precision.
    """
    model = load_extractor(weights_dir, download=False, verify=False)
    waves = [torch.from_numpy(audio.load(p)) for p in paths]
    with torch.inference_mode():
        examples, index = clip_examples(waves)
        out, seconds = {}, {}
        for name, on in (("fp32", False), ("bf16", True)):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                raw = model.embed_raw(examples)
            seconds[name] = time.perf_counter() - start
            raw = raw.float()
            out[name] = (
                model.pool(model.postprocessor(raw), index, len(waves)).numpy(),
                model.pool(raw, index, len(waves)).numpy(),
            )
    (q32, r32), (q16, r16) = out["fp32"], out["bf16"]
    rel_q = np.linalg.norm(q16 - q32, axis=1) / np.linalg.norm(q32, axis=1)
    rel_r = np.linalg.norm(r16 - r32, axis=1) / np.linalg.norm(r32, axis=1)
    return {
        "n_clips": len(paths),
        "n_examples": len(examples),
        "max_rel": float(rel_q.max()),
        "median_rel": float(np.median(rel_q)),
        "max_rel_raw": float(rel_r.max()),
        "cnn_ex_per_s": {k: len(examples) / v for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=48, help="clips per sample rate")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--rates", type=int, nargs="+", default=[16000, 44100], help="sample rates of the WAV files")
    p.add_argument("--rounds", type=int, default=3, help="timed calls of each contender per rate")
    p.add_argument("--batch-clips", type=int, default=ExtractSettings.batch_clips)
    p.add_argument("--workers", type=int, default=ExtractSettings.workers)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--bf16-clips", type=int, default=16, help="clips for the bf16 error (0: skip)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-stage breakdown")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, numpy {np.__version__}, "
        f"python {platform.python_version()}"
    )
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="rbl_extract_speed_") as tmp:
        root = Path(tmp)
        weights_dir = root / "weights"
        weights = synthetic.write_weights(weights_dir)
        settings = ExtractSettings(
            extractor="vggish",
            weights_dir=str(weights_dir),
            download=False,
            verify=False,
            batch_clips=args.batch_clips,
            workers=args.workers,
        )
        files = {
            rate: synthetic.write_clips(root / f"wav{rate}", args.clips, args.seconds, rate) for rate in args.rates
        }
        digests = {rate: [file_sha256(p) for p in paths] for rate, paths in files.items()}
        audio_seconds = args.clips * args.seconds
        print(
            f"{args.clips} clips of {args.seconds:g} s per rate ({audio_seconds:g} s of audio), "
            f"batch_clips {args.batch_clips}, workers {args.workers}, {args.rounds} rounds\n"
        )

        times: dict[int, dict[str, list[float]]] = {rate: {"ours": [], "baseline": []} for rate in args.rates}
        last: dict[int, dict[str, np.ndarray]] = {rate: {} for rate in args.rates}
        for r in range(args.rounds):
            for rate in args.rates:
                order = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
                for who in order:
                    if who == "ours":
                        sec, feats = run_ours(files[rate], digests[rate], settings, root / f"cache{rate}_{r}")
                    else:
                        sec, feats = run_baseline(files[rate], weights)
                    times[rate][who].append(sec)
                    last[rate][who] = feats
                    print(
                        f"round {r + 1} {rate} Hz {who:8s} {sec:7.2f} s  "
                        f"({audio_seconds / sec:6.1f}x real time)  load {load_average()}",
                        flush=True,
                    )

        print(
            "\n| WAV rate | ours x real time (median / best) | ours clips/s | baseline x real time (median / best) "
            "| baseline clips/s | ours / baseline (medians) | target >= 2x |"
        )
        print("|---:|---:|---:|---:|---:|---:|---|")
        for rate in args.rates:
            ours, base = statistics.median(times[rate]["ours"]), statistics.median(times[rate]["baseline"])
            best_o, best_b = min(times[rate]["ours"]), min(times[rate]["baseline"])
            ratio = base / ours
            print(
                f"| {rate} | {audio_seconds / ours:.1f} / {audio_seconds / best_o:.1f} | {args.clips / ours:.2f} "
                f"| {audio_seconds / base:.1f} / {audio_seconds / best_b:.1f} | {args.clips / base:.2f} "
                f"| {ratio:.2f}x | {'met' if ratio >= TARGET_RATIO else 'missed'} |"
            )

        print("\nsame pooled embeddings (quantised 0..255, ours vs baseline):")
        for rate in args.rates:
            a = agreement(last[rate]["ours"], last[rate]["baseline"])
            print(
                f"  {rate} Hz: max |difference| {a['max_abs']:.4g}, max relative (L2 per clip) {a['max_rel']:.2e}, "
                f"{a['clips_differing']} of {a['n']} clips differ at all"
            )

        if not args.no_breakdown:
            rate = args.rates[-1]
            print(f"\nwhere the time goes ({rate} Hz files, stages run one after another, seconds):")
            for name, stages in (
                ("ours", breakdown_ours(files[rate], weights_dir, args.batch_clips)),
                ("baseline", breakdown_baseline(files[rate], weights)),
            ):
                total = sum(stages.values())
                parts = ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in stages.items())
                print(f"  {name}: {total:.2f} s = {parts}")

        if args.bf16_clips:
            e = bf16_error(files[args.rates[0]][: args.bf16_clips], weights_dir)
            speed = ", ".join(f"{k} {v:.1f}" for k, v in e["cnn_ex_per_s"].items())
            print(
                f"\nbf16 (CPU autocast, CNN only) vs fp32 on {e['n_clips']} clips ({e['n_examples']} examples): "
                f"pooled embeddings max relative error {e['max_rel']:.2e} (median {e['median_rel']:.2e}; "
                f"before PCA/quantisation {e['max_rel_raw']:.2e}); target < 1e-2: "
                f"{'met' if e['max_rel'] < 1e-2 else 'missed'}. CNN examples/s: {speed}"
            )
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
