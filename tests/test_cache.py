"""The feature cache without torch: a shard served wholly from the cache never imports torch, and
gives the same bytes as computing; reading many entries at once checks what reading one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from rbl.cache import DIM, DIMS, ENTRY_SIZE, Cache, entry_size, key_settings
from rbl.cli import main
from rbl.feature_settings import ExtractSettings

from runs import logmel_extract_args

RATE = 16000
SRC = Path(__file__).resolve().parents[1] / "src"


def ingested(folder: Path, n: int) -> Path:
    """n short distinct WAVs in two classes, ingested; the manifest's path."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        sf.write(audio / f"c{i}.wav", (0.1 * rng.standard_normal(RATE // 10)).astype(np.float32), RATE)
    pd.DataFrame({"file": [f"c{i}.wav" for i in range(n)], "label": ["a", "b"] * (n // 2)}).to_csv(
        folder / "annotations.csv", index=False
    )
    pd.DataFrame({"family": ["F", "F"], "kind": ["a", "b"]}).to_csv(folder / "taxonomy.csv", index=False)
    args = ["--quiet", "ingest", "--taxonomy", str(folder / "taxonomy.csv")]
    args += ["--annotations", str(folder / "annotations.csv"), "--audio-root", str(audio)]
    args += ["--out-manifest", str(folder / "manifest.csv"), "--out-taxonomy", str(folder / "tax.out.csv")]
    assert main(args) == 0
    return folder / "manifest.csv"


def extract_in_subprocess(args: list[str]) -> dict:
    """Run `rbl extract` in a fresh interpreter; whether it imported torch, and the record."""
    code = (
        "import sys, json; from rbl.cli import main; rc = main(json.loads(sys.argv[1])); "
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_logmel_never_imports_torch_and_a_cached_shard_is_byte_identical(tmp_path):
    manifest = ingested(tmp_path / "data", 6)
    cache = tmp_path / "cache"
    # logmel computes with numpy (rbl.logmel): torch's import (about 1.4 s) is spared, computing or not
    first = extract_in_subprocess(logmel_extract_args(manifest, cache, tmp_path / "computed"))
    assert first == {"rc": 0, "torch": False}
    second = extract_in_subprocess(logmel_extract_args(manifest, cache, tmp_path / "cached"))
    assert second == {"rc": 0, "torch": False}
    assert (tmp_path / "cached.npy").read_bytes() == (tmp_path / "computed.npy").read_bytes()
    assert np.load(tmp_path / "cached.npy").shape == (6, DIMS["logmel"])
    info = json.loads((tmp_path / "cached.json").read_text())
    assert (info["computed"], info["from_cache"], info["cache_rejected"]) == (0, 6, 0)
    computed = json.loads((tmp_path / "computed.json").read_text())
    assert info["cache_dir"] == computed["cache_dir"]  # the same key, with and without torch

    # One shard wholly cached, the other missing a clip: that one computes it, still without torch.
    store = next(p for p in cache.iterdir() if p.is_dir())
    digest = pd.read_csv(manifest)["sha256"].iloc[-1]
    (store / digest[:2] / f"{digest}.vec").unlink()
    shard = [logmel_extract_args(manifest, cache, tmp_path / f"s{k}", "--shard", k, "--shards", 2) for k in (0, 1)]
    assert extract_in_subprocess(shard[0]) == {"rc": 0, "torch": False}
    assert extract_in_subprocess(shard[1]) == {"rc": 0, "torch": False}
    assert json.loads((tmp_path / "s1.json").read_text())["computed"] == 1
    joined = np.concatenate([np.load(tmp_path / "s0.npy"), np.load(tmp_path / "s1.npy")])
    assert joined.tobytes() == np.load(tmp_path / "computed.npy").tobytes()


def test_auto_without_weights_runs_logmel_without_torch(tmp_path):
    # `auto` looks for VGGish's weights (rbl.weight_files, torch-free) and, finding none, runs
    # logmel: no extract job of a user without the weights pays for importing torch.
    manifest = ingested(tmp_path / "data", 4)
    logmel = logmel_extract_args(manifest, tmp_path / "cache", tmp_path / "logmel")
    assert extract_in_subprocess(logmel) == {"rc": 0, "torch": False}
    auto = logmel_extract_args(manifest, tmp_path / "cache", tmp_path / "auto")
    auto[auto.index("--extractor") + 1] = "auto"
    auto[auto.index("--weights-dir") + 1] = str(tmp_path / "no_weights")
    assert extract_in_subprocess(auto) == {"rc": 0, "torch": False}
    record = json.loads((tmp_path / "auto.json").read_text())
    assert record["extractor"] == "logmel" and "VGGish weights unavailable" in record["reason"]
    assert (tmp_path / "auto.npy").read_bytes() == (tmp_path / "logmel.npy").read_bytes()


def test_the_key_follows_the_code_and_the_settings(tmp_path):
    logmel = key_settings("logmel", ExtractSettings(extractor="logmel"))
    assert set(logmel) == {"extractor", "code"}
    from rbl.codehash import modules_hash

    assert logmel["code"] == modules_hash(["rbl.features"])
    # The code that computes and stores a vector is part of the key; the driver that only decides
    # where each row comes from (cache, previous matrix, computation) is not, so editing it never
    # makes every clip be computed again.
    from rbl.codehash import closure

    names = {p.relative_to(SRC / "rbl").as_posix() for p in closure(["rbl.features"])}
    assert {"cache.py", "features.py", "logmel.py", "vggish/frontend.py", "audio.py"} <= names
    assert not {"extraction.py", "previous.py", "shards.py"} & names
    assert Cache(tmp_path, logmel).dir != Cache(tmp_path, {**logmel, "code": "0" * 16}).dir


def test_reading_many_entries_checks_each_as_reading_one(tmp_path):
    cache = Cache(tmp_path, {"extractor": "logmel", "code": "test"})
    rng = np.random.default_rng(0)
    digests = [f"{k:02x}" + "ab" * 31 for k in range(8)]
    vectors = rng.standard_normal((8, DIM)).astype(np.float32)
    for d, v in zip(digests, vectors):
        cache.put(d, v)
    cache.path(digests[1]).unlink()  # missing
    data = cache.path(digests[2]).read_bytes()
    cache.path(digests[2]).write_bytes(data[:-1])  # truncated
    cache.path(digests[3]).write_bytes(data + b"\0")  # too long
    cache.path(digests[4]).write_bytes(cache.path(digests[0]).read_bytes())  # another clip's entry
    nan = vectors[5].copy()
    nan[7] = np.nan
    cache.put(digests[5], nan)
    flipped = bytearray(cache.path(digests[6]).read_bytes())
    flipped[100] ^= 1  # inside the vector: the checksum fails
    cache.path(digests[6]).write_bytes(bytes(flipped))
    cache.path(digests[7]).unlink()
    cache.path(digests[7]).mkdir()  # unreadable as a file

    out = np.full((8, DIM), -1.0, dtype=np.float32)
    assert cache.read(digests, out) == [1, 2, 3, 4, 5, 6, 7]
    assert out[0].tobytes() == vectors[0].tobytes()
    assert (out[1:] == -1).all()  # rows not served are left alone
    assert cache.rejected == 6  # the missing entry is no rejection
    single = Cache(tmp_path, {"extractor": "logmel", "code": "test"})
    assert [single.get(d) is None for d in digests] == [False] + [True] * 7
    assert single.get(digests[0]).tobytes() == vectors[0].tobytes()
    assert single.rejected == 6
    assert len(cache.path(digests[0]).read_bytes()) == ENTRY_SIZE


def test_entries_are_sized_by_the_extractor(tmp_path):
    """The torch-free widths agree with the extractors' outputs, and an entry of another width is refused."""
    from rbl.features import _Pooling
    from rbl.logmel import N_CEPSTRA, N_MELS

    assert DIMS == {"vggish": 128, "logmel": 4 * (N_MELS + N_CEPSTRA)}
    pooling = _Pooling("logmel")
    pooling.add(0, np.random.default_rng(0).standard_normal((5, N_MELS)))
    assert pooling.pop(0).shape == (DIMS["logmel"],)
    wide = Cache(tmp_path, {"extractor": "logmel", "code": "test"}, DIMS["logmel"])
    wide.put("ef" * 32, np.ones(DIMS["logmel"], np.float32))
    assert len(wide.path("ef" * 32).read_bytes()) == entry_size(DIMS["logmel"]) == ENTRY_SIZE + 4 * 208
    assert wide.get("ef" * 32).tobytes() == np.ones(DIMS["logmel"], np.float32).tobytes()
    narrow = Cache(tmp_path, {"extractor": "logmel", "code": "test"}, DIM)
    assert narrow.dir == wide.dir and narrow.get("ef" * 32) is None and narrow.rejected == 1


@pytest.mark.parametrize("n", [0, 1])
def test_reading_nothing_or_one(tmp_path, n):
    cache = Cache(tmp_path, {"extractor": "logmel", "code": "test"})
    digests = ["cd" * 32][:n]
    if n:
        cache.put(digests[0], np.arange(DIM, dtype=np.float32))
    out = np.zeros((n, DIM), dtype=np.float32)
    assert cache.read(digests, out) == []
    assert (out == np.arange(DIM, dtype=np.float32)).all()
