"""The Snakemake workflow on a generated 100,000-clip dataset: DAG build, no-op rerun, incremental reruns.

Measures, each as whole `snakemake` commands run in a temporary working directory (never the
repository's results/), with the workflow's own `--configfile` and `--directory`:

(a) the DAG build: `snakemake -n` of the full `rule all` DAG on a fresh directory (everything to
    do), and the no-op rerun: `snakemake --cores 2` after a complete run (nothing to do);
    `--repeats` times each, median reported;
(b) the number of jobs in that dry run (per rule), against the number of clips;
(c) after adding one clip (a WAV file and an annotation row), a rerun of the features target: the
    extraction record (`features/logmel.json`: computed, from_cache) and every shard's extract log
    line, beside the first run's time and counts;
(d) after changing one clip's label, a rerun of the features target: computed must be 0 and the
    features .npy byte-identical;
(e) one clip touched (new times, same bytes): nothing to do; then the same clip replaced by other
    content with an OLDER modification time (`cp -p`): a rerun of the features target computes
    exactly that clip.

Targets (issue 13) at 100,000 clips: no-op rerun < 5 s, the rerun after adding one clip < 10 s.

The same (a) and (b) run on a small dataset (`--baseline-clips`, default 120, the demo's size) as
the baseline: the growth from 120 to 10,000 clips is what the clip count costs the workflow.

The clips are 1 s of 16 kHz 16-bit mono WAV written with soundfile (a class-dependent tone plus
white noise drawn per clip, so every file's content and hash differ), in the demo's two-level
taxonomy (3 families x 4 sounds). Extraction uses `logmel`: it needs no weights (none can be
downloaded here), and the cache and the workflow do the same for VGGish, whose cache key only adds
the weight files' hashes; what is measured is the workflow's bookkeeping, not the extractor's speed.
The full DAG trains one tiny experiment (RbL, one seed, one epoch) beside InitEmb, so every rule of
`rule all` is present.

Usage: python benchmarks/workflow_scale.py [--clips 100000] [--baseline-clips 120] [--repeats 5]
       [--shards 2] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from rbl.demo import TAXONOMY  # noqa: E402 - the demo's family -> sounds, importable from the checkout

SR = 16000
NAME = "scale"
FEATURES = f"results/{NAME}/features/logmel.npy"
INFO = f"results/{NAME}/features/logmel.json"


def load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_clip(path: Path, leaf: int, seed: int) -> None:
    """One second of a class tone plus noise drawn from `seed`: distinct bytes for every clip."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    wave = 0.3 * np.sin(2 * np.pi * (150.0 * (leaf + 1)) * t + rng.uniform(0, 2 * np.pi))
    wave += rng.uniform(0.01, 0.1) * rng.standard_normal(SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR, subtype="PCM_16")


def leaves() -> list[tuple[str, str]]:
    """(family, sound) of every leaf of the demo's taxonomy, in order."""
    return [(family, sound) for family, sounds in TAXONOMY.items() for sound in sounds]


def clip_row(k: int) -> tuple[Path, str, str, int]:
    """Clip k's path under audio/, its label, its group and its leaf index (clips cycle the leaves)."""
    all_leaves = leaves()
    leaf = k % len(all_leaves)
    family, sound = all_leaves[leaf]
    return Path(family, sound, f"clip{k:06d}.wav"), sound, f"{sound}-src{k // (2 * len(all_leaves))}", leaf


def make_dataset(root: Path, n: int) -> None:
    """taxonomy.csv, annotations.csv (file,label,group) and n clips under root/audio."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "taxonomy.csv").write_text("family,sound\n" + "".join(f"{f},{s}\n" for f, s in leaves()))
    rows = ["file,label,group"]
    for k in range(n):
        rel, label, group, leaf = clip_row(k)
        write_clip(root / "audio" / rel, leaf, k)
        rows.append(f"{rel.as_posix()},{label},{group}")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")


def reset_dataset(root: Path, n: int) -> None:
    """Undo what an earlier run's (c), (d) and (e) did to a dataset of n clips: the added clip, the
    changed label and the replaced clip, so it is again exactly what make_dataset(root, n) writes."""
    rows = ["file,label,group"]
    for k in range(n):
        rel, label, group, _ = clip_row(k)
        rows.append(f"{rel.as_posix()},{label},{group}")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    (root / "audio" / clip_row(n)[0]).unlink(missing_ok=True)
    rel, _, _, leaf = clip_row(3)
    write_clip(root / "audio" / rel, leaf, 3)


def add_clip(root: Path, k: int) -> str:
    """A new clip file and its annotation row (appended); returns its file name."""
    rel, label, group, leaf = clip_row(k)
    write_clip(root / "audio" / rel, leaf, k)
    with open(root / "annotations.csv", "a") as handle:
        handle.write(f"{rel.as_posix()},{label},{group}\n")
    return rel.as_posix()


def relabel(root: Path, row: int) -> tuple[str, str, str]:
    """Give annotation row `row` (0-based, after the header) another leaf of the taxonomy."""
    path = root / "annotations.csv"
    lines = path.read_text().splitlines()
    file, label, group = lines[row + 1].split(",")
    sounds = [s for _, s in leaves()]
    new = sounds[(sounds.index(label) + 1) % len(sounds)]
    lines[row + 1] = f"{file},{new},{group}"
    path.write_text("\n".join(lines) + "\n")
    return file, label, new


def write_config(workdir: Path, shards: int) -> None:
    """The dataset's config: logmel on the CPU, `shards` extraction jobs, InitEmb and a one-epoch RbL."""
    config = {
        "dataset": {
            "name": NAME,
            "audio_root": "data/audio",
            "annotations": "data/annotations.csv",
            "taxonomy": "data/taxonomy.csv",
        },
        "split": {"seed": 0, "unseen_per_parent": 1, "fractions": {"train": 0.6, "val": 0.2, "test_seen": 0.2}},
        "features": {
            "extractor": "logmel",
            "shards": shards,
            "gpus": 0,
            "cache_dir": "results/cache/features",
            "batch_clips": 256,
            "workers": 2,
            "device": "cpu",
            "vggish": {"weights_dir": "weights", "download": False, "final_relu": True, "verify": True},
        },
        "train": {"device": "cpu", "gpus": 0},
        "seeds": [0],
        "experiments": {
            "InitEmb": {"loss": "none"},
            "RbL": {"loss": "rank", "optimizer": "adam", "lr": 0.01, "batch_size": 64, "max_epochs": 1, "patience": 1},
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


CODE = REPO  # the workflow and package that run: a snapshot of the checkout unless --live


def snapshot(dest: Path) -> Path:
    """Copy the workflow and the package, so that edits to the checkout during the benchmark (the
    rules hash the package's source into their params) neither rerun jobs nor break them."""
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Snakefile", "environment.yml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("workflow", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=skip)
    return dest


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    """Run snakemake on workdir from the workflow's folder, as a user would; wall seconds and output."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(CODE / "src"),
    }  # `rbl` imports the snapshot's package
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(CODE / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=CODE)
    seconds = time.perf_counter() - start
    text = out.stdout + out.stderr
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{text[-4000:]}")
    return seconds, text


def job_stats(text: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's 'Job stats' table ({} when there is nothing to do)."""
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:")[1].split("\ntotal")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "job"}


def timed(workdir: Path, repeats: int, *args: str, expect_nothing: bool = False) -> tuple[list[float], str]:
    """Seconds of `repeats` identical commands and the last one's output; optionally require a no-op."""
    times, text = [], ""
    for _ in range(repeats):
        seconds, text = snakemake(workdir, *args)
        if expect_nothing and "Nothing to be done" not in text:
            sys.exit(f"expected nothing to do, got:\n{text[-3000:]}")
        times.append(seconds)
    return times, text


def summary(times: list[float]) -> str:
    """Median, min, max and count of repeated timings, for printing."""
    return f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, n={len(times)})"


def sha256(path: Path) -> str:
    """A file's content hash (features before and after a label change)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# a shard's count line (rbl.extraction.extract logs it)
COUNT_LINE = r"features: \d+ clip\(s\) computed, \d+ from the cache(?: \([^)]*\))?, \d+ skipped"


def extract_logs(workdir: Path) -> list[str]:
    """The count line of every shard's extract log."""
    lines = []
    for log in sorted((workdir / f"results/{NAME}/logs/extract").glob("*.log")):
        found = re.findall(COUNT_LINE, log.read_text())
        lines.append(f"shard {log.stem}: {found[-1] if found else '(no count line)'}")
    return lines


def counts(workdir: Path) -> dict:
    """The extraction record's counts (`features/logmel.json`, gathered over the shards)."""
    info = json.loads((workdir / INFO).read_text())
    return {k: info[k] for k in ("n_clips", "computed", "from_cache", "skipped", "shards")}


def dag_and_noop(workdir: Path, clips: int, repeats: int) -> dict:
    """(a) and (b) for one dataset: fresh dry run, full run, no-op reruns."""
    dry, text = timed(workdir, repeats, "-n")
    jobs = job_stats(text)
    print(f"  [{clips} clips] dry run of rule all (fresh, everything to do): {summary(dry)}; load {load()}")
    print(
        f"  [{clips} clips] jobs planned: {sum(jobs.values())} for {clips} clips: "
        + ", ".join(f"{k} {v}" for k, v in jobs.items())
    )
    seconds, _ = snakemake(workdir, FEATURES)
    first = counts(workdir)
    print(f"  [{clips} clips] first run of the features target: {seconds:.1f} s, {first}; load {load()}")
    full, _ = snakemake(workdir)
    print(f"  [{clips} clips] rest of rule all (split, normalise, train, evaluate, plots...): {full:.1f} s")
    noop_dry, _ = timed(workdir, repeats, "-n", expect_nothing=True)
    noop, _ = timed(workdir, repeats, expect_nothing=True)
    print(f"  [{clips} clips] dry run after the complete run (nothing to do): {summary(noop_dry)}")
    print(f"  [{clips} clips] no-op rerun `snakemake --cores 2`: {summary(noop)}; load {load()}")
    return {"dry": dry, "jobs": jobs, "first_s": seconds, "first": first, "noop": noop, "noop_dry": noop_dry}


def incremental(workdir: Path, clips: int, first: dict) -> dict:
    """(c) and (d) on a completed dataset: add one clip, then change one label; rerun the features."""
    before = np.load(workdir / FEATURES)
    name = add_clip(workdir / "data", clips)
    _, text = snakemake(workdir, FEATURES, "-n")
    planned = job_stats(text)
    added_s, _ = snakemake(workdir, FEATURES)
    added = counts(workdir)
    same_rows = bool(np.array_equal(np.load(workdir / FEATURES)[: len(before)], before))
    print(
        f"  [{clips} clips] (c) added {name}: jobs {planned}; rerun {added_s:.1f} s "
        f"(first run {first['first_s']:.1f} s); computed {added['computed']}, from_cache {added['from_cache']} "
        f"(first run: computed {first['first']['computed']}, from_cache {first['first']['from_cache']}); "
        f"the {len(before)} earlier rows unchanged: {same_rows}; load {load()}"
    )
    for line in extract_logs(workdir):
        print(f"      {line}")

    before_hash = sha256(workdir / FEATURES)
    file, old_label, new_label = relabel(workdir / "data", 7)
    _, text = snakemake(workdir, FEATURES, "-n")
    planned = job_stats(text)
    relabelled_s, _ = snakemake(workdir, FEATURES)
    relabelled = counts(workdir)
    identical = sha256(workdir / FEATURES) == before_hash
    print(
        f"  [{clips} clips] (d) {file}: {old_label} -> {new_label}: jobs {planned}; rerun {relabelled_s:.1f} s; "
        f"computed {relabelled['computed']}, from_cache {relabelled['from_cache']}; "
        f"features .npy byte-identical: {identical}; load {load()}"
    )
    for line in extract_logs(workdir):
        print(f"      {line}")

    clip = workdir / "data/audio" / clip_row(3)[0]
    stamp = clip.stat().st_mtime_ns + 10**9
    os.utime(clip, ns=(stamp, stamp))
    touched_s, text = snakemake(workdir, FEATURES)
    touched_noop = "Nothing to be done" in text
    other = workdir / "other.wav"
    write_clip(other, clip_row(3)[3], seed=10**9)  # same class, other noise: other bytes, same size
    os.utime(other, ns=(10**18, 10**18))
    shutil.copy2(other, clip)  # cp -p: the older time comes along
    replaced_s, _ = snakemake(workdir, FEATURES)
    replaced = counts(workdir)
    print(
        f"  [{clips} clips] (e) {clip.name} touched: nothing to do {touched_noop} ({touched_s:.1f} s); "
        f"replaced with an older mtime: rerun {replaced_s:.1f} s, computed {replaced['computed']}; load {load()}"
    )
    return {
        "added": added,
        "added_s": added_s,
        "same_rows": same_rows,
        "relabelled": relabelled,
        "relabelled_s": relabelled_s,
        "identical": identical,
        "touched_noop": touched_noop,
        "replaced": replaced,
        "replaced_s": replaced_s,
    }


def main() -> None:
    """Baseline and full-size datasets: (a) and (b) on each, then (c) and (d) on each; a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--baseline-clips", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary folder, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the working folders")
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="with --workdir: keep the clips of an earlier run there (writing 100,000 takes minutes)",
    )
    parser.add_argument(
        "--live", action="store_true", help="run the checkout's workflow and package instead of a snapshot of them"
    )
    args = parser.parse_args()

    global CODE
    top = args.workdir or Path(tempfile.mkdtemp(prefix="rbl-scale-"))
    top.mkdir(parents=True, exist_ok=True)
    if not args.live:
        shutil.rmtree(top / "code", ignore_errors=True)
        CODE = snapshot(top / "code")
    print(f"working in {top}; {os.cpu_count()} CPUs; load {load()}")
    results = {}
    try:
        for clips in (args.baseline_clips, args.clips):
            workdir = top / f"clips{clips}"
            start = time.perf_counter()
            if args.reuse_data and (workdir / "data").is_dir():
                # everything but the clips: results, cache, Snakemake's records; the clips the
                # earlier run added or replaced are regenerated as make_dataset writes them
                for name in ("results", ".snakemake", "other.wav"):
                    path = workdir / name
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                reset_dataset(workdir / "data", clips)
                print(f"[{clips} clips] dataset reused (reset in {time.perf_counter() - start:.1f} s)")
            else:
                if workdir.exists():
                    shutil.rmtree(workdir)
                make_dataset(workdir / "data", clips)
                print(f"[{clips} clips] dataset written in {time.perf_counter() - start:.1f} s")
            write_config(workdir, args.shards)
            results[clips] = dag_and_noop(workdir, clips, args.repeats)

        for clips in (args.baseline_clips, args.clips):
            results[clips].update(incremental(top / f"clips{clips}", clips, results[clips]))

        big, small = results[args.clips], results[args.baseline_clips]
        med = statistics.median
        print(f"\nsummary (median of whole commands; baseline: the same on {args.baseline_clips} clips)")
        print(
            f"  (a) DAG build (dry run of rule all, fresh): {med(big['dry']):.2f} s at {args.clips} clips, "
            f"{med(small['dry']):.2f} s at {args.baseline_clips}"
        )
        met = med(big["noop"]) < 5
        print(
            f"  (a) no-op rerun: {med(big['noop']):.2f} s at {args.clips} clips, "
            f"{med(small['noop']):.2f} s at {args.baseline_clips}; target < 5 s: {'met' if met else 'MISSED'}"
        )
        print(
            f"  (b) jobs: {sum(big['jobs'].values())} at {args.clips} clips, "
            f"{sum(small['jobs'].values())} at {args.baseline_clips}"
        )
        added, relabelled = big["added"], big["relabelled"]
        ok_c = added["computed"] == 1 and added["from_cache"] == args.clips and big["same_rows"] and big["added_s"] < 10
        print(
            f"  (c) after adding one clip: computed {added['computed']}, from_cache {added['from_cache']} in "
            f"{big['added_s']:.1f} s (first run: computed {big['first']['computed']} in {big['first_s']:.1f} s; "
            f"at {args.baseline_clips} clips the same rerun took {small['added_s']:.1f} s); "
            f"target one clip computed, < 10 s: {'met' if ok_c else 'MISSED'}"
        )
        ok_d = relabelled["computed"] == 0 and big["identical"]
        print(
            f"  (d) label change: computed {relabelled['computed']}, features byte-identical {big['identical']}, "
            f"{big['relabelled_s']:.1f} s: {'met' if ok_d else 'MISSED'}"
        )
        ok_e = big["touched_noop"] and big["replaced"]["computed"] == 1
        print(
            f"  (e) touched clip: nothing to do {big['touched_noop']}; replaced with an older mtime: computed "
            f"{big['replaced']['computed']} in {big['replaced_s']:.1f} s: {'met' if ok_e else 'MISSED'}"
        )
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
