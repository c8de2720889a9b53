"""Interrupted and repeated runs: a killed extraction resumes from its cache, cache entries are whole
and verified, an interrupted write never replaces a good file, and the same stage on the same data
gives the same bytes (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from rbl.atomic import atomic_path
from rbl.cache import DIMS, STALE_TMP_SECONDS, Cache
from rbl.cli import main

from runs import kill_when, logmel_extract_args, rbl_process

RATE = 16000
N_CLIPS = 300


def write_clips(folder: Path, n: int, seconds: float = 0.05) -> Path:
    """n tiny distinct WAVs under 2 families x 2 kinds, ingested into folder/manifest.csv."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    kinds = ["a1", "a2", "b1", "b2"]
    rows = []
    for i in range(n):
        name = f"clip{i:04d}.wav"
        sf.write(
            audio / name, (rng.standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32), RATE, subtype="PCM_16"
        )
        rows.append({"file": name, "label": kinds[i % 4]})
    pd.DataFrame(rows).to_csv(folder / "annotations.csv", index=False)
    pd.DataFrame({"family": ["A", "A", "B", "B"], "kind": kinds}).to_csv(folder / "taxonomy.csv", index=False)
    assert (
        main(
            [
                "--quiet",
                "ingest",
                "--taxonomy",
                str(folder / "taxonomy.csv"),
                "--annotations",
                str(folder / "annotations.csv"),
                "--audio-root",
                str(audio),
                "--out-manifest",
                str(folder / "manifest.csv"),
                "--out-taxonomy",
                str(folder / "taxonomy.out.csv"),
            ]
        )
        == 0
    )
    return folder


def extract_args(folder: Path, cache: Path, out: str) -> list[str]:
    return logmel_extract_args(folder / "manifest.csv", cache, folder / out)


def entries(cache: Path) -> list[Path]:
    """Files a reader could take for cache entries (hidden temporaries excluded)."""
    return [p for p in cache.rglob("*.vec") if not p.name.startswith(".")]


def cache_of(cache: Path) -> Cache:
    (key_dir,) = [p for p in cache.iterdir() if p.is_dir()]
    settings = json.loads((key_dir / "settings.json").read_text())
    store = Cache(cache, {k: v for k, v in settings.items() if k != "format"}, DIMS[settings["extractor"]])
    assert store.dir == key_dir
    return store


def test_killed_extraction_resumes_from_the_cache(tmp_path):
    folder = write_clips(tmp_path / "data", N_CLIPS)
    cache = tmp_path / "cache"
    kill_when(
        rbl_process(extract_args(folder, cache, "killed"), stderr=subprocess.PIPE),
        lambda: len(entries(cache)) >= N_CLIPS // 4,
        "extraction",
        poll=0.01,
    )
    assert not (folder / "killed.npy").exists()  # outputs are written last, atomically

    # Every entry a reader can see is whole and passes its checks; temporaries are hidden.
    store = cache_of(cache)
    done = entries(cache)
    assert N_CLIPS // 4 <= len(done) < N_CLIPS
    manifest = pd.read_csv(folder / "manifest.csv")
    digests = set(manifest["sha256"])
    assert all(store.get(p.stem) is not None and p.stem in digests for p in done)
    assert all(
        p.name.startswith(".") and ".tmp" in p.name
        for p in cache.rglob("*")
        if p.is_file() and p not in done and p.name != "settings.json"
    )

    # The rerun finishes and recomputes only what was not cached.
    assert main(extract_args(folder, cache, "resumed")) == 0
    info = json.loads((folder / "resumed.json").read_text())
    assert (info["from_cache"], info["computed"], info["cache_rejected"]) == (len(done), N_CLIPS - len(done), 0)
    assert len(entries(cache)) == N_CLIPS

    # The same features, bit for bit, as a run that was never interrupted (every 6th clip: both
    # clips cached before the kill and clips computed after it).
    rows = np.arange(0, N_CLIPS, 6)
    manifest.iloc[rows].to_csv(folder / "manifest.csv", index=False)
    assert main(extract_args(folder, tmp_path / "fresh", "fresh")) == 0
    assert json.loads((folder / "fresh.json").read_text())["computed"] == len(rows)
    assert np.load(folder / "resumed.npy")[rows].tobytes() == np.load(folder / "fresh.npy").tobytes()
    cached_before = {p.stem for p in done}
    assert 0 < sum(d in cached_before for d in manifest["sha256"].iloc[rows]) < len(rows)


def test_stale_temporaries_are_cleaned_and_never_read(tmp_path):
    folder = write_clips(tmp_path / "data", 8)
    cache = tmp_path / "cache"
    assert main(extract_args(folder, cache, "a")) == 0
    store = cache_of(cache)
    entry = entries(cache)[0]
    old = entry.with_name(f".{entry.name}.k1l2m3.tmp.vec")
    fresh = entry.with_name(f".{entry.name}.n4o5p6.tmp.vec")
    old.write_bytes(entry.read_bytes()[:100])
    fresh.write_bytes(b"")
    past = time.time() - STALE_TMP_SECONDS - 60
    os.utime(old, (past, past))
    assert main(extract_args(folder, cache, "b")) == 0
    assert json.loads((folder / "b.json").read_text())["from_cache"] == 8
    assert not old.exists()  # an interrupted write from long ago: removed
    assert fresh.exists()  # possibly another job's write in progress: left alone
    assert store.get(entry.stem) is not None


def _flip_vector_byte(path: Path, vec: np.ndarray) -> None:
    data = bytearray(path.read_bytes())
    at = bytes(data).find(vec.astype("<f4").tobytes())
    assert at > 0
    data[at + 5] ^= 0x01  # a one-bit change inside the stored vector: the right size and layout
    path.write_bytes(bytes(data))


def test_damaged_cache_entries_are_recomputed_not_trusted(tmp_path):
    folder = write_clips(tmp_path / "data", 12)
    cache = tmp_path / "cache"
    assert main(extract_args(folder, cache, "a")) == 0
    store = cache_of(cache)
    digests = list(pd.read_csv(folder / "manifest.csv")["sha256"])
    paths = [store.path(d) for d in digests]
    paths[0].write_bytes(paths[0].read_bytes()[:-40])  # truncated
    paths[1].write_bytes(b"\x00" * store.entry_size)  # garbage of the right size
    _flip_vector_byte(paths[2], store.get(digests[2]))  # silent bit rot (our checksum sees it)
    paths[3].write_bytes(paths[4].read_bytes())  # another clip's entry under this name
    paths[5].write_bytes(b"")  # empty
    store.put(digests[6], np.full(store.dim, np.nan, np.float32))  # a NaN vector, however it got there
    # A well-formed entry whose vector does not match its checksum.
    entry = bytearray(paths[7].read_bytes())
    vec = np.frombuffer(bytes(entry), dtype="<f4", count=store.dim, offset=36) + np.float32(1)
    entry[36 : 36 + 4 * store.dim] = vec.astype("<f4").tobytes()
    paths[7].write_bytes(bytes(entry))
    damaged = 7
    assert main(extract_args(folder, cache, "b")) == 0
    info = json.loads((folder / "b.json").read_text())
    assert (info["computed"], info["from_cache"], info["cache_rejected"]) == (damaged, 12 - damaged, damaged)
    assert np.load(folder / "a.npy").tobytes() == np.load(folder / "b.npy").tobytes()
    assert all(store.get(d) is not None for d in digests)  # repaired
    # An entry of another size (a vector of another extractor under this key) is not taken either.
    other = Cache(cache, store.settings, store.dim + 128)
    assert other.dir == store.dir and other.get(digests[0]) is None


def test_a_killed_write_never_replaces_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, target)
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, torch
        from rbl.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            torch.save({{"w": torch.zeros(1000)}}, tmp)
            with open(tmp, "r+b") as handle:
                handle.truncate(100)  # half-written when the job is killed
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert leftovers and all(name.startswith(".model.pt.") and ".tmp" in name for name in leftovers)
    # An error inside the block: the old file stays and the temporary is removed.
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1 + len(leftovers)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


# --- reproducibility --------------------------------------------------------------------------


def tiny_training_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    kinds = np.repeat(np.arange(4), 10)
    x = (rng.standard_normal((40, 16)) + kinds[:, None] * 0.5).astype(np.float32)
    families = ["A", "A", "B", "B"]
    names = ["a1", "a2", "b1", "b2"]
    files = [f"c{i:02d}.wav" for i in range(40)]
    split = np.array(["train", "train", "train", "val", "test_seen"] * 8)
    pd.DataFrame(
        {
            "file": files,
            "path": files,
            "sha256": "0",
            "label": [names[k] for k in kinds],
            "group": files,
            "split": "",
            "family": [families[k] for k in kinds],
            "kind": [names[k] for k in kinds],
        }
    ).to_csv(folder / "manifest.csv", index=False)
    pd.DataFrame({"family": families, "kind": names}).to_csv(folder / "taxonomy.csv", index=False)
    pd.DataFrame({"file": files, "split": split}).to_csv(folder / "splits.csv", index=False)
    np.savez(folder / "x.npz", x=x, mean=np.zeros(16, np.float32), std=np.ones(16, np.float32))
    (folder / "info.json").write_text(json.dumps({"extractor": "logmel"}))


def train_and_evaluate(folder: Path, out: str, seed: int) -> None:
    common = [
        "--manifest",
        str(folder / "manifest.csv"),
        "--taxonomy",
        str(folder / "taxonomy.csv"),
        "--splits",
        str(folder / "splits.csv"),
    ]
    assert (
        main(
            [
                "--quiet",
                "train",
                "--features",
                str(folder / "x.npz"),
                *common,
                "--seed",
                str(seed),
                "--device",
                "cpu",
                "--out",
                str(folder / f"{out}.pt"),
                "--history",
                str(folder / f"{out}.csv"),
                "--loss",
                "rank",
                "--sampler",
                "balanced",
                "--optimizer",
                "adam",
                "--lr",
                "0.01",
                "--batch-size",
                "8",
                "--max-epochs",
                "4",
                "--patience",
                "4",
                "--hidden",
                "8",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--quiet",
                "embed",
                "--features",
                str(folder / "x.npz"),
                "--checkpoint",
                str(folder / f"{out}.pt"),
                "--out",
                str(folder / f"{out}.emb.npz"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--quiet",
                "evaluate",
                "--embeddings",
                str(folder / f"{out}.emb.npz"),
                *common,
                "--features-info",
                str(folder / "info.json"),
                "--dataset",
                "d",
                "--experiment",
                "e",
                "--seed",
                str(seed),
                "--out",
                str(folder / f"{out}.json"),
            ]
        )
        == 0
    )


def test_training_twice_gives_identical_results(tmp_path):
    tiny_training_data(tmp_path)
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_and_evaluate(tmp_path, out, seed)
    load = {k: torch.load(tmp_path / f"{k}.pt", weights_only=True) for k in "abc"}
    a, b, c = (load[k]["state_dict"] for k in "abc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in load["a"].items() if k != "state_dict"} == {
        k: v for k, v in load["b"].items() if k != "state_dict"
    }
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (
        np.load(tmp_path / "a.emb.npz")["embeddings"].tobytes()
        == np.load(tmp_path / "b.emb.npz")["embeddings"].tobytes()
    )
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    # Another seed is another run (so the equality above is not vacuous).
    assert not all(torch.equal(a[k], c[k]) for k in a)
