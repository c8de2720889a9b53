"""The previous extraction's matrix as a first lookup (rbl.previous): rows are taken only when the
index matches the cache folder and the very matrix file, never NaN rows, and a rerun gives the
bytes the cache alone gives."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from rbl.atomic import atomic_path
from rbl.cli import main
from rbl.demo import generate
from rbl.previous import take_rows, write_index

from runs import load_test_config, logmel_extract_args, snakemake, write_config

DIM = 6
FOLDER = "cache/0123456789abcdef"


def digest(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture
def previous(tmp_path):
    """A matrix of 5 rows (row 3: a skipped clip, NaN) and its index."""
    matrix = tmp_path / "logmel.npy"
    rows = np.arange(5 * DIM, dtype=np.float32).reshape(5, DIM) / 7
    rows[3] = np.nan
    np.save(matrix, rows)
    index = tmp_path / "logmel.index.npz"
    write_index(index, matrix, [digest(i) for i in range(5)], FOLDER)
    return matrix, index, rows


def taken(matrix, index, digests, folder=FOLDER):
    out = np.full((len(digests), DIM), -1, dtype=np.float32)
    return take_rows(index, matrix, folder, digests, out), out


def test_known_rows_are_taken_bit_for_bit_others_left(previous):
    matrix, index, rows = previous
    wanted = [digest(4), digest(9), digest(0), digest(3), digest(0)]  # 9: new clip; 3: skipped before
    filled, out = taken(matrix, index, wanted)
    assert filled.tolist() == [True, False, True, False, True]
    assert out[0].tobytes() == rows[4].tobytes() and out[2].tobytes() == out[4].tobytes() == rows[0].tobytes()
    assert (out[1] == -1).all() and (out[3] == -1).all()  # left for the cache or computation


def test_a_touched_matrix_still_matches(previous):
    matrix, index, _ = previous
    os.utime(matrix, ns=(10**18, 10**18))  # (Snakemake may touch outputs after a job)
    assert taken(matrix, index, [digest(1)])[0].all()


def _rewrite(matrix: Path) -> None:
    """The same bytes as a new file renamed into place, as every write of ours is (rbl.atomic)."""
    shutil.copy(matrix, matrix.with_suffix(".new"))
    os.replace(matrix.with_suffix(".new"), matrix)


@pytest.mark.parametrize(
    "spoil, folder",
    [
        pytest.param(lambda m, i: None, "cache/fedcba9876543210", id="another cache folder"),
        pytest.param(lambda m, i: i.unlink(), FOLDER, id="no index"),
        pytest.param(lambda m, i: i.write_bytes(b"PK\x03\x04 not a zip"), FOLDER, id="damaged index"),
        pytest.param(lambda m, i: m.unlink(), FOLDER, id="no matrix"),
        pytest.param(lambda m, i: _rewrite(m), FOLDER, id="matrix rewritten"),
        pytest.param(lambda m, i: np.save(m, np.zeros((5, DIM + 1), np.float32)), FOLDER, id="another width"),
    ],
)
def test_no_row_is_taken_when_the_index_does_not_match(previous, spoil, folder):
    matrix, index, _ = previous
    spoil(matrix, index)
    filled, out = taken(matrix, index, [digest(i) for i in range(5)], folder)
    assert not filled.any() and (out == -1).all()


def test_a_matrix_rewritten_atomically_is_another_file(tmp_path, previous):
    """A gather that wrote its matrix and died before its index: the old index is not paired."""
    matrix, index, rows = previous
    with atomic_path(matrix) as tmp:
        np.save(tmp, rows[::-1].copy())  # same size and shape, other rows
    assert not taken(matrix, index, [digest(0)])[0].any()


def test_precomputed_vectors_are_never_taken(previous):
    matrix, index, _ = previous
    write_index(index, matrix, [digest(i) for i in range(5)], "")
    assert not taken(matrix, index, [digest(0)], "")[0].any()


def _noise(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000, subtype="PCM_16")


def test_workflow_rerun_takes_earlier_clips_from_the_previous_matrix(tmp_path):
    """One clip added: the rerun computes it, takes every other row from the last matrix, and its
    features equal, byte for byte, an extraction from the cache alone."""
    generate(tmp_path / "data", clips_per_class=2, seed=5)
    config = load_test_config("user.yaml")
    config["features"].update(extractor="logmel", shards=2)
    write_config(tmp_path, config)
    target = "results/user/features/logmel.npy"
    assert snakemake(tmp_path, target).returncode == 0
    first = np.load(tmp_path / target)

    annotations = tmp_path / "data/annotations.csv"
    label = pd.read_csv(annotations)["label"].iloc[0]
    _noise(tmp_path / "data/audio/added.wav", 11)
    annotations.write_text(annotations.read_text() + f"added.wav,{label},added\n")
    out = snakemake(tmp_path, target)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads((tmp_path / "results/user/features/logmel.json").read_text())
    n = len(first)
    assert (info["computed"], info["from_cache"], info["from_previous"]) == (1, n, n)
    second = np.load(tmp_path / target)
    assert second[:n].tobytes() == first.tobytes()

    # The same rerun without the index: every row from the cache, the same bytes.
    (tmp_path / "results/user/features/logmel.index.npz").unlink()
    out = snakemake(tmp_path, target, "--forcerun", "extract")
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads((tmp_path / "results/user/features/logmel.json").read_text())
    assert (info["computed"], info["from_cache"], info["from_previous"]) == (0, n + 1, 0)
    assert np.load(tmp_path / target).tobytes() == second.tobytes()


def test_extract_wants_the_matrix_and_its_index_together(tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"file,path,sha256\na.wav,{tmp_path / 'a.wav'},{digest(0)}\n")
    args = logmel_extract_args(manifest, tmp_path / "cache", tmp_path / "out", "--previous", tmp_path / "m.npy")
    assert main(args) != 0
    assert "give --previous and --previous-index together" in capsys.readouterr().err
