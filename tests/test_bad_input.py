"""What goes wrong with real inputs, and how the pipeline answers: a clear message (file, row, what to
do) with exit status 2, or a documented and reported handling; never a library traceback, a silent
drop or a wrong number. Most cases run through the command line (`rbl.cli.main`) as the workflow does.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from rbl import normalise
from rbl.cli import main
from rbl.data import SKIPPED
from rbl.evaluation import evaluate_embeddings
from rbl.experiment import TrainSettings
from rbl.train import fit

from runs import NO_OVERRIDE, logmel_extract_args, snakemake

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
TAXONOMY = pd.DataFrame({"family": ["A", "A", "B", "B"], "kind": ["a1", "a2", "b1", "b2"]})
KINDS = list(TAXONOMY["kind"])


# --- helpers ---------------------------------------------------------------------------------


def tone(seconds: float, freq: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_dataset(folder: Path, per_kind: int = 6, seconds: float = 0.3) -> Path:
    """A small dataset: 2 families x 2 kinds, `per_kind` distinct tones each (one group per clip)."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rows = []
    for k, kind in enumerate(KINDS):
        for j in range(per_kind):
            name = f"{kind}_{j}.wav"
            sf.write(
                audio / name, tone(seconds, 150 * (k + 1) * (1 + 0.04 * j), seed=10 * k + j), RATE, subtype="PCM_16"
            )
            rows.append({"file": name, "label": kind})
    pd.DataFrame(rows).to_csv(folder / "annotations.csv", index=False)
    TAXONOMY.to_csv(folder / "taxonomy.csv", index=False)
    return folder


def add_clip(
    folder: Path, name: str, label: str, content: bytes | np.ndarray, rate: int = RATE, subtype: str = "PCM_16"
) -> Path:
    """Put one more file into a dataset and annotate it."""
    path = folder / "audio" / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        sf.write(path, content, rate, subtype=subtype)
    table = pd.read_csv(folder / "annotations.csv", dtype=str, keep_default_na=False)
    table = pd.concat([table, pd.DataFrame([{"file": name, "label": label}])], ignore_index=True)
    table.to_csv(folder / "annotations.csv", index=False)
    return path


class Output:
    """What a stage says: its stderr and its log records (pytest captures logging separately)."""

    def __init__(self, capsys, caplog) -> None:
        self.capsys, self.caplog = capsys, caplog

    def reset(self) -> None:
        self.capsys.readouterr()
        self.caplog.clear()

    def text(self) -> str:
        return self.capsys.readouterr().err + "\n" + self.caplog.text


@pytest.fixture
def io(capsys, caplog) -> Output:
    caplog.set_level("INFO", logger="rbl")
    return Output(capsys, caplog)


def run(io: Output, *args) -> tuple[int, str]:
    """One stage through the command line: (exit status, stderr and log)."""
    io.reset()
    code = main(["--quiet", *map(str, args)])
    return code, io.text()


def ingest(io, folder: Path, annotations: str = "annotations.csv", taxonomy: str = "taxonomy.csv"):
    return run(
        io,
        "ingest",
        "--taxonomy",
        folder / taxonomy,
        "--annotations",
        folder / annotations,
        "--audio-root",
        folder / "audio",
        "--out-manifest",
        folder / "manifest.csv",
        "--out-taxonomy",
        folder / "taxonomy.out.csv",
    )


def extract(io, folder: Path, cache: Path, out: str = "feats", on_error: str = "stop", *extra):
    args = logmel_extract_args(
        folder / "manifest.csv",
        cache,
        folder / out,
        "--on-error",
        on_error,
        "--skipped",
        folder / f"{out}.skipped.csv",
        *extra,
        batch_clips=8,
        workers=2,
    )
    return run(io, *args[1:])  # run() adds --quiet


def split(io, folder: Path, unseen: int = 1, skipped: str | Path = "", fractions="train=0.6,val=0.2,test_seen=0.2"):
    args = [
        "split",
        "--manifest",
        folder / "manifest.csv",
        "--taxonomy",
        folder / "taxonomy.out.csv",
        "--unseen-per-parent",
        unseen,
        "--fractions",
        fractions,
        "--seed",
        "0",
        "--out",
        folder / "splits.csv",
    ]
    if skipped:
        args += ["--skipped", skipped]
    return run(io, *args)


TRAIN_FLAGS = [
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
    "3",
    "--patience",
    "2",
]


def train(io, folder: Path, out: str = "model", seed: int = 0):
    return run(
        io,
        "train",
        "--features",
        folder / "feats.norm.npz",
        "--manifest",
        folder / "manifest.csv",
        "--taxonomy",
        folder / "taxonomy.out.csv",
        "--splits",
        folder / "splits.csv",
        "--seed",
        seed,
        "--device",
        "cpu",
        "--out",
        folder / f"{out}.pt",
        "--history",
        folder / f"{out}.history.csv",
        *TRAIN_FLAGS,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for the module: the good clips are computed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "data")


# --- annotations and taxonomy ----------------------------------------------------------------


def test_missing_files_are_all_listed_with_their_rows(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv")
    table.loc[3, "file"] = "gone_1.wav"
    table.loc[7, "file"] = "sub/gone_2.wav"
    table.to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 2
    assert "2 annotated file(s) not found" in err
    assert "annotations.csv line 5" in err and "gone_1.wav" in err
    assert "annotations.csv line 9" in err and "gone_2.wav" in err
    assert "Traceback" not in err


def test_unlisted_audio_is_reported_and_not_used(io, dataset):
    sf.write(dataset / "audio/stray.wav", tone(0.3, 440), RATE)
    code, err = ingest(io, dataset)
    assert code == 0
    assert "not in" in err and "stray.wav" in err
    assert "stray.wav" not in set(pd.read_csv(dataset / "manifest.csv")["file"])


@pytest.mark.parametrize(
    "file, message",
    [
        ("../outside.wav", "line 26: '../outside.wav' points outside the root folder"),
        ("/etc/passwd", "line 26: '/etc/passwd' is an absolute path"),
        ("link.wav", "line 26: 'link.wav' points outside the root folder"),
    ],
)
def test_paths_leaving_the_audio_root_are_refused(io, dataset, file, message):
    sf.write(dataset / "outside.wav", tone(0.3, 440), RATE)
    os.symlink(dataset / "outside.wav", dataset / "audio/link.wav")
    table = pd.read_csv(dataset / "annotations.csv")
    pd.concat([table, pd.DataFrame([{"file": file, "label": "a1"}])]).to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 2 and message in err


def test_duplicate_rows_name_both_lines(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv")
    pd.concat([table, table.iloc[[2]]]).to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 2 and "line 26: 'a1_2.wav' is listed again (first at line 4)" in err


def test_unknown_label_suggests_close_names(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv")
    table.loc[0, "label"] = "a11"
    table.to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 2 and "line 2: label 'a11' is not a node of the taxonomy; did you mean" in err


def test_empty_label_cell(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv", dtype=str)
    table.loc[1, "label"] = ""
    table.to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 2 and "line 3: the 'label' cell is empty" in err


def test_ambiguous_child_name_asks_for_a_path_label(io, dataset):
    # 'x' is a child of both A and B: the label 'x' could mean either.
    pd.DataFrame({"family": ["A", "A", "B", "B", "A", "B"], "kind": ["a1", "a2", "b1", "b2", "x", "x"]}).to_csv(
        dataset / "taxonomy.csv", index=False
    )
    add_clip(dataset, "x_0.wav", "x", tone(0.3, 900))
    code, err = ingest(io, dataset)
    assert code == 2
    assert "line 26: label 'x' names several nodes (A/x, B/x); give the label as a path" in err
    table = pd.read_csv(dataset / "annotations.csv")
    table.loc[24, "label"] = "B/x"
    table.to_csv(dataset / "annotations.csv", index=False)
    code, err = ingest(io, dataset)
    assert code == 0
    manifest = pd.read_csv(dataset / "manifest.csv", keep_default_na=False)
    assert manifest.iloc[24][["family", "kind"]].tolist() == ["B", "x"]


def test_empty_taxonomy_level(io, dataset):
    (dataset / "taxonomy.csv").write_text("family,kind\nA,a1\nA,a2\nB,\nB,b2\n")
    code, err = ingest(io, dataset)
    assert code == 2 and "taxonomy.csv line 4: level 'kind' is empty" in err


def test_bom_is_read_and_other_encodings_are_explained(io, dataset):
    text = (dataset / "annotations.csv").read_text()
    (dataset / "annotations.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert ingest(io, dataset)[0] == 0
    (dataset / "annotations.csv").write_bytes((text + "caf\xe9.wav,a1\n").encode("latin-1"))
    code, err = ingest(io, dataset)
    assert code == 2 and "annotations.csv: not UTF-8 text" in err and "save it as UTF-8" in err


def test_semicolon_separated_csv_is_explained(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv")
    table.to_csv(dataset / "annotations.csv", index=False, sep=";")
    code, err = ingest(io, dataset)
    assert code == 2 and "no 'file' column" in err and "semicolon-separated" in err


@pytest.mark.parametrize("level", ["group", "file", "split", "path", "sha256", "label", "all", "Group"])
def test_reserved_taxonomy_level_names_are_refused(io, dataset, level):
    """A level named like a manifest column would overwrite it (a level 'group' replaced the groups)."""
    (dataset / "taxonomy.csv").write_text(f"family,{level}\nA,a1\nA,a2\nB,b1\nB,b2\n")
    code, err = ingest(io, dataset)
    assert code == 2
    assert f"{dataset / 'taxonomy.csv'}: level '{level}' is a reserved name" in err and "rename" in err
    assert "Traceback" not in err and not (dataset / "manifest.csv").exists()


def test_control_characters_in_file_names_are_refused_naming_the_line(io, dataset):
    """A carriage return in a (quoted) file name would split the manifest row in two: refused."""
    (dataset / "audio/a1_\r9.wav").write_bytes((dataset / "audio/a1_0.wav").read_bytes())
    with open(dataset / "annotations.csv", "a", newline="") as table:
        table.write('"a1_\r9.wav",a1\n')
    code, err = ingest(io, dataset)
    assert code == 2
    assert "annotations.csv line 26: the 'file' cell 'a1_\\r9.wav' holds the control character '\\r'" in err
    assert not (dataset / "manifest.csv").exists()
    with open(dataset / "annotations.csv", "w", newline="") as table:
        table.write('file,label,group\na1_0.wav,a1,"rec\n1"\n')
    code, err = ingest(io, dataset)
    assert code == 2 and "line 2: the 'group' cell 'rec\\n1' holds the control character '\\n'" in err


def test_control_characters_in_taxonomy_names_are_refused(io, dataset):
    (dataset / "taxonomy.csv").write_bytes(b'family,kind\nA,"a\r1"\nA,a2\nB,b1\nB,b2\n')
    code, err = ingest(io, dataset)
    assert code == 2 and "taxonomy.csv line 2: name 'a\\r1' holds the control character '\\r'" in err


def test_converted_tables_refuse_a_carriage_return_naming_the_row(io, tmp_path):
    """The authors' CSVs are read whole (a quoted "\\r" is one cell), but no table written could keep it."""
    folder = tmp_path / "authors"
    folder.mkdir()
    (folder / "train.csv").write_text(
        'wavfilename,hierarchical_labels\na001_0_30.wav,bus_VEHICLE\n"b\r002_30_60.wav",metro_INDOOR\n', newline=""
    )
    (folder / "val.csv").write_text("wavfilename,hierarchical_labels\nc003_0_30.wav,bus_VEHICLE\n")
    code, err = run(
        io,
        "convert-authors",
        "--dir",
        folder,
        "--out-annotations",
        tmp_path / "ann.csv",
        "--out-taxonomy",
        tmp_path / "tax.csv",
    )
    assert code == 2
    assert f"{tmp_path / 'ann.csv'}: row 3, column 'file': 'train/b\\r002_30_60.wav' holds a carriage return" in err
    assert not (tmp_path / "ann.csv").exists()


def test_names_with_quotes_commas_and_spaces_round_trip_through_the_manifest(io, dataset):
    """Every name that is accepted comes back from the manifest exactly."""
    name = 'odd, "quoted" name .wav'
    add_clip(dataset, name, "a1", tone(0.3, 440))
    code, err = ingest(io, dataset)
    assert code == 0, err
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == 25 and manifest["file"].iloc[-1] == name


def test_symlink_loops_under_the_audio_root(io, dataset):
    """A looping link that is annotated is named with its line; loops that are not are passed by."""
    os.symlink("..", dataset / "audio/up")  # a folder loop: never descended into
    os.symlink("stray.wav", dataset / "audio/stray.wav")  # unannotated looping link
    code, err = ingest(io, dataset)
    assert code == 0, err
    assert "stray.wav" in err  # reported as unlisted, as any other file
    os.symlink("loop.wav", dataset / "audio/loop.wav")
    with open(dataset / "annotations.csv", "a") as table:
        table.write("loop.wav,a1\n")
    code, err = ingest(io, dataset)
    assert code == 2 and "annotations.csv line 26" in err and "loop.wav" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 5


@pytest.fixture
def locked(dataset):
    """chmod 0 a file or folder of the dataset (permissions restored afterwards, for the clean-up)."""
    paths = []

    def lock(path: Path) -> None:
        path.chmod(0)
        paths.append(path)

    yield lock
    for path in paths:
        path.chmod(0o755)


def _ingest_without_override(folder: Path) -> subprocess.CompletedProcess:
    """The ingest stage in a process that file permissions apply to: as root (tests in containers),
    without the capabilities that let root read any file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [
            *NO_OVERRIDE,
            sys.executable,
            "-m",
            "rbl.cli",
            "--quiet",
            "ingest",
            "--taxonomy",
            folder / "taxonomy.csv",
            "--annotations",
            folder / "annotations.csv",
            "--audio-root",
            folder / "audio",
            "--out-manifest",
            folder / "manifest.csv",
            "--out-taxonomy",
            folder / "taxonomy.out.csv",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "unreadable, message",
    [
        ("audio/a1_2.wav", "annotations.csv line 4: {folder}/audio/a1_2.wav cannot be read (Permission denied)"),
        ("annotations.csv", "{folder}/annotations.csv: cannot be read (Permission denied)"),
        ("taxonomy.csv", "{folder}/taxonomy.csv: cannot be read (Permission denied)"),
    ],
)
def test_unreadable_input_files_are_named(dataset, locked, unreadable, message):
    locked(dataset / unreadable)
    out = _ingest_without_override(dataset)
    assert out.returncode == 2, out.stderr
    assert message.format(folder=dataset) in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 3


def test_unreadable_folder_under_the_audio_root_is_reported(dataset, locked):
    (dataset / "audio/private").mkdir()
    locked(dataset / "audio/private")
    out = _ingest_without_override(dataset)
    assert out.returncode == 0, out.stderr
    assert f"{dataset}/audio/private: cannot be listed (Permission denied)" in out.stderr


@pytest.mark.parametrize(
    "flag", [["--lr", "nan"], ["--lr", "inf"], ["--margins", "0.1", "inf"], ["--collapse-spread", "nan"]]
)
def test_non_finite_training_settings_are_refused(capsys, flag):
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "train",
                "--features",
                "f",
                "--manifest",
                "m",
                "--taxonomy",
                "t",
                "--splits",
                "s",
                "--seed",
                "0",
                "--device",
                "cpu",
                "--out",
                "o",
                "--history",
                "h",
                *flag,
            ]
        )
    assert stop.value.code == 2
    assert f"argument {flag[0]}: expected a finite number" in capsys.readouterr().err


# --- audio that cannot be used ----------------------------------------------------------------


def _wav_bytes(x: np.ndarray, subtype: str = "PCM_16") -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _flac_bytes(x: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, format="FLAC")
    data = bytearray(buffer.getvalue())
    data[len(data) // 3 : len(data) // 3 + 300] = bytes(range(256)) + bytes(44)  # scrambled frames
    return bytes(data)


def _nan_samples() -> np.ndarray:
    x = tone(0.5, 300)
    x[100:110] = np.nan
    return x


BAD_AUDIO = {
    # name: (content, subtype, reason shown)
    "truncated.wav": (_wav_bytes(tone(1.0, 300))[:16000], None, "truncated: the WAV header declares 32000 bytes"),
    "corrupt.flac": (_flac_bytes(tone(1.0, 300)), None, "cannot decode audio"),
    "zero_length.wav": (b"", None, "empty file (0 bytes)"),
    "no_samples.wav": (_wav_bytes(np.zeros(0, np.float32)), None, "the file holds no samples"),
    "notes.wav": (b"these are my notes, not audio\n" * 20, None, "cannot decode audio (Error opening"),
    "nan_samples.wav": (_wav_bytes(_nan_samples(), "FLOAT"), None, "10 sample frame(s) are NaN or infinite"),
}


@pytest.mark.parametrize("name", list(BAD_AUDIO))
def test_undecodable_audio_stops_naming_the_file_and_the_switch(io, dataset, cache, name):
    content, _, reason = BAD_AUDIO[name]
    add_clip(dataset, name, "b2", content)
    assert ingest(io, dataset)[0] == 0  # ingest hashes files; decoding is extraction's job
    code, err = extract(io, dataset, cache)
    assert code == 2
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert name in line and reason in line and "features.on_error: skip" in line
    assert "Traceback" not in err and not (dataset / "feats.npy").exists()


@pytest.mark.parametrize("name", list(BAD_AUDIO))
def test_undecodable_audio_is_skipped_listed_and_counted(io, dataset, cache, name):
    content, _, reason = BAD_AUDIO[name]
    add_clip(dataset, name, "b2", content)
    assert ingest(io, dataset)[0] == 0
    code, err = extract(io, dataset, cache, "feats", "skip")
    assert code == 0 and "skipped" in err and name in err
    skipped = pd.read_csv(dataset / "feats.skipped.csv")
    assert list(skipped.columns) == ["file", "reason"]
    assert skipped["file"].tolist() == [name] and reason in skipped["reason"][0]
    info = json.loads((dataset / "feats.json").read_text())
    assert info["skipped"] == 1 and info["n_clips"] == 25 and info["on_error"] == "skip"
    assert info["skipped_file"] == str(dataset / "feats.skipped.csv")
    assert info["computed"] + info["from_cache"] == 24
    feats = np.load(dataset / "feats.npy")
    assert feats.shape == (25, 336)
    # The skipped row is NaN (never a made-up vector), every other row a real one.
    assert np.isnan(feats[24]).all() and np.isfinite(feats[:24]).all()


def test_skipped_clip_takes_part_in_no_stage(io, dataset, cache):
    """A skipped clip stays in the manifest, gets the split 'skipped', and no stage uses it."""
    add_clip(dataset, "zz_broken.wav", "a1", b"")
    assert ingest(io, dataset)[0] == 0
    assert extract(io, dataset, cache, "feats", "skip")[0] == 0
    # Splits made without the skipped list: normalisation refuses to use the NaN row.
    assert split(io, dataset, unseen=0)[0] == 0
    code, err = run(
        io,
        "normalise",
        "--features",
        dataset / "feats.npy",
        "--manifest",
        dataset / "manifest.csv",
        "--splits",
        dataset / "splits.csv",
        "--out",
        dataset / "feats.norm.npz",
    )
    assert code == 2 and "zz_broken.wav" in err and "rerun the split stage" in err
    # With it (as the workflow runs it), the clip is marked and everything downstream works.
    code, err = split(io, dataset, unseen=0, skipped=dataset / "feats.skipped.csv")
    assert code == 0 and "left out of every split" in err
    splits = pd.read_csv(dataset / "splits.csv")
    assert len(splits) == 25 and splits.set_index("file")["split"]["zz_broken.wav"] == SKIPPED
    assert (splits["split"] == SKIPPED).sum() == 1
    assert (
        run(
            io,
            "normalise",
            "--features",
            dataset / "feats.npy",
            "--manifest",
            dataset / "manifest.csv",
            "--splits",
            dataset / "splits.csv",
            "--out",
            dataset / "feats.norm.npz",
        )[0]
        == 0
    )
    norm = np.load(dataset / "feats.norm.npz")
    feats = np.load(dataset / "feats.npy")
    is_train = (splits["split"] == "train").to_numpy()
    np.testing.assert_allclose(norm["mean"], feats[is_train].mean(axis=0), rtol=1e-6)
    assert np.isnan(norm["x"][24]).all() and np.isfinite(norm["x"][:24]).all()
    assert train(io, dataset)[0] == 0
    history = pd.read_csv(dataset / "model.history.csv")
    assert np.isfinite(history["loss"].iloc[1:]).all() and np.isfinite(history["val_silhouette"]).all()
    assert (
        run(
            io,
            "embed",
            "--features",
            dataset / "feats.norm.npz",
            "--checkpoint",
            dataset / "model.pt",
            "--out",
            dataset / "emb.npz",
        )[0]
        == 0
    )
    assert (
        run(
            io,
            "evaluate",
            "--embeddings",
            dataset / "emb.npz",
            "--manifest",
            dataset / "manifest.csv",
            "--taxonomy",
            dataset / "taxonomy.out.csv",
            "--splits",
            dataset / "splits.csv",
            "--features-info",
            dataset / "feats.json",
            "--dataset",
            "d",
            "--experiment",
            "RbL",
            "--seed",
            "0",
            "--out",
            dataset / "metrics.json",
        )[0]
        == 0
    )
    result = json.loads((dataset / "metrics.json").read_text())
    assert result["skipped"] == 1
    counts = splits["split"].value_counts()
    for row in result["metrics"]:
        if row["metric"] == "silhouette" and row["level"] == "family":
            assert row["n"] == counts.get(row["split"], 0)  # the skipped clip is counted nowhere
        if row["value"] is not None:
            assert np.isfinite(row["value"])


def test_sharded_extraction_gathers_the_skipped_list(io, dataset, cache):
    add_clip(dataset, "notes.wav", "a2", b"not audio at all\n" * 10)
    assert ingest(io, dataset)[0] == 0
    for k in range(2):
        assert extract(io, dataset, cache, f"part{k}", "skip", "--shard", k, "--shards", 2)[0] == 0
    parts = [dataset / f"part{k}" for k in range(2)]
    code, _ = run(
        io,
        "gather",
        "--manifest",
        dataset / "manifest.csv",
        "--parts",
        *[f"{p}.npy" for p in parts],
        "--infos",
        *[f"{p}.json" for p in parts],
        "--out",
        dataset / "all.npy",
        "--info",
        dataset / "all.json",
        "--skipped",
        dataset / "skipped.csv",
    )
    assert code == 0
    info = json.loads((dataset / "all.json").read_text())
    assert (info["n_clips"], info["skipped"], info["shards"]) == (25, 1, 2)
    assert info["skipped_file"] == str(dataset / "skipped.csv") and "skipped_clips" not in info
    skipped = pd.read_csv(dataset / "skipped.csv")
    assert skipped["file"].tolist() == ["notes.wav"] and "cannot decode audio" in skipped["reason"][0]
    # Shards without skipped clips still write the list (empty, with its header).
    assert list(pd.read_csv(dataset / "part0.skipped.csv").columns) == ["file", "reason"]


def test_silent_and_short_clips_give_finite_features_and_are_never_dropped(io, dataset, cache):
    add_clip(dataset, "silent.wav", "a1", np.zeros(RATE, np.float32))
    add_clip(dataset, "short.wav", "a2", tone(0.1, 500))  # shorter than one 0.96 s example
    add_clip(dataset, "one_sample.wav", "b1", np.full(1, 0.5, np.float32))
    add_clip(dataset, "short_stereo_44k.flac", "b2", np.stack([tone(0.2, 700, 44100)] * 2, axis=1), rate=44100)
    assert ingest(io, dataset)[0] == 0
    assert extract(io, dataset, cache)[0] == 0
    feats = np.load(dataset / "feats.npy")
    assert feats.shape == (28, 336) and np.isfinite(feats).all()
    info = json.loads((dataset / "feats.json").read_text())
    assert info["skipped"] == 0 and info["n_clips"] == 28
    silent = feats[24]
    np.testing.assert_allclose(silent[:64], np.log(0.01), rtol=1e-6)  # the log floor, not -inf
    assert (silent[64:] < 1e-4).all()  # no spread over time (float rounding only)
    # A short clip is zero-padded to one example: the same features as the clip padded by hand.
    padded = np.zeros(15600, np.float32)
    # (the samples as stored in 16 bits: the deltas of the quiet bands see the quantisation noise)
    padded[:1600] = sf.read(dataset / "audio" / "short.wav", dtype="float32")[0]
    add_clip(dataset, "padded.wav", "a2", padded, subtype="FLOAT")
    short = np.load(dataset / "feats.npy")[25]
    assert ingest(io, dataset)[0] == 0 and extract(io, dataset, cache)[0] == 0
    np.testing.assert_allclose(np.load(dataset / "feats.npy")[28], short, rtol=1e-4, atol=1e-4)


def test_constant_feature_dimensions_are_not_nan_after_z_scoring(io, dataset, cache):
    # Every training clip silent: every dimension is constant over the training split.
    x = np.tile(np.r_[np.full(64, np.log(0.01)), np.zeros(64)].astype(np.float32), (10, 1))
    mean, std = normalise.fit(x)
    assert (std == 1).all() and np.isfinite(normalise.apply(x, mean, std)).all()
    # A dimension that differs only by float32 rounding is constant too (not noise blown up to unit scale).
    y = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    y[:, 1] = np.float32(-4.6) + np.float32(1e-6) * (np.arange(50) % 2)
    mean, std = normalise.fit(y)
    z = normalise.apply(y, mean, std)
    assert std[1] == 1 and np.abs(z[:, 1]).max() < 1e-3 and np.isfinite(z).all()
    # Through the stage: a dataset whose clips are all silent normalises to finite zeros.
    for j in range(6):
        add_clip(dataset, f"silent_{j}.wav", "a1", np.zeros(RATE // 2, np.float32))
    assert ingest(io, dataset)[0] == 0 and extract(io, dataset, cache)[0] == 0
    assert split(io, dataset)[0] == 0
    assert (
        run(
            io,
            "normalise",
            "--features",
            dataset / "feats.npy",
            "--manifest",
            dataset / "manifest.csv",
            "--splits",
            dataset / "splits.csv",
            "--out",
            dataset / "feats.norm.npz",
        )[0]
        == 0
    )
    assert np.isfinite(np.load(dataset / "feats.norm.npz")["x"]).all()


# --- precomputed features ---------------------------------------------------------------------


def _precomputed(folder: Path, bad: np.ndarray, allow_pickle: bool = False) -> None:
    (folder / "feats").mkdir()
    table = pd.read_csv(folder / "annotations.csv")
    for k, name in enumerate(table["file"]):
        np.save(folder / "feats" / name.replace(".wav", ".npy"), np.full(8, k, np.float32))
    np.save(folder / "feats" / "a1_0.npy", bad, allow_pickle=allow_pickle)


def _precomputed_pipeline(io, folder: Path, on_error: str):
    assert (
        run(
            io,
            "ingest",
            "--taxonomy",
            folder / "taxonomy.csv",
            "--annotations",
            folder / "annotations.csv",
            "--features-dir",
            folder / "feats",
            "--out-manifest",
            folder / "manifest.csv",
            "--out-taxonomy",
            folder / "taxonomy.out.csv",
        )[0]
        == 0
    )
    return run(
        io,
        "extract",
        "--manifest",
        folder / "manifest.csv",
        "--extractor",
        "precomputed",
        "--weights-dir",
        "none",
        "--download",
        "false",
        "--final-relu",
        "true",
        "--verify",
        "true",
        "--batch-clips",
        "1",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        "none",
        "--out",
        folder / "p.npy",
        "--info",
        folder / "p.json",
        "--on-error",
        on_error,
        "--skipped",
        folder / "skipped.csv",
    )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_precomputed_nan_or_inf_is_refused_or_skipped(io, dataset, value):
    _precomputed(dataset, np.array([0, value, 0, 0, 0, 0, 0, 0], np.float32))
    code, err = _precomputed_pipeline(io, dataset, "stop")
    assert code == 2 and "a1_0.npy: holds NaN or Inf" in err and "features.on_error: skip" in err
    code, err = _precomputed_pipeline(io, dataset, "skip")
    assert code == 0
    assert pd.read_csv(dataset / "skipped.csv")["file"].tolist() == ["a1_0.wav"]
    feats = np.load(dataset / "p.npy")
    assert np.isnan(feats[0]).all() and np.isfinite(feats[1:]).all()


def test_precomputed_pickle_is_never_loaded(io, dataset):
    _precomputed(dataset, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    code, err = _precomputed_pipeline(io, dataset, "stop")
    assert code == 2 and "a1_0.npy: not a readable .npy array" in err and "allow_pickle" in err


# --- splits -----------------------------------------------------------------------------------


def test_split_left_empty_by_the_unseen_classes_names_the_keys(io, tmp_path):
    folder = write_dataset(tmp_path / "tiny", per_kind=1)
    assert ingest(io, folder)[0] == 0
    # One kind per family is held out: two clips remain, one per class, both go to train.
    code, err = split(io, folder, unseen=1)
    assert code == 2
    assert "no clip landed in 'val'" in err and "2 of 4 clip(s) are held out as test_unseen" in err
    assert "split.unseen_per_parent" in err and "split.fractions.val" in err


def test_split_left_empty_by_skipped_clips_says_so(io, tmp_path):
    folder = write_dataset(tmp_path / "tiny", per_kind=2)
    assert ingest(io, folder)[0] == 0
    assert split(io, folder, unseen=0, fractions="train=0.5,val=0.5,test_seen=0.0")[0] == 0
    val = pd.read_csv(folder / "splits.csv").query("split == 'val'")["file"]
    pd.DataFrame({"file": val, "reason": "cannot decode audio"}).to_csv(folder / "skipped.csv", index=False)
    code, err = split(io, folder, unseen=0, skipped=folder / "skipped.csv", fractions="train=0.5,val=0.5,test_seen=0.0")
    assert code == 2 and "no clip landed in 'val'" in err
    assert f"{len(val)} clip(s) were skipped as undecodable (see skipped.csv), {len(val)} of them from 'val'" in err


def test_explicit_split_column_without_val_is_an_error(io, dataset):
    table = pd.read_csv(dataset / "annotations.csv")
    table["split"] = ["train", "test_seen"] * 12
    table.to_csv(dataset / "annotations.csv", index=False)
    assert ingest(io, dataset)[0] == 0
    code, err = split(io, dataset)
    assert code == 2 and "split column leaves no clip in 'val'" in err


# --- one example of a class -------------------------------------------------------------------


def test_single_example_class_trains_and_metrics_say_what_is_undefined():
    rng = np.random.default_rng(0)
    # train: classes 0..2 with 6 examples, class 3 with a single one; val: one clip of class 3 only.
    labels = np.array([[0, 0]] * 6 + [[0, 1]] * 6 + [[1, 2]] * 6 + [[1, 3]])
    x = rng.standard_normal((len(labels), 16)).astype(np.float32) + labels[:, 1:] * 2.0
    settings = TrainSettings(loss="rank", optimizer="adam", lr=0.01, batch_size=8, max_epochs=3, patience=2, out_dim=3)
    checkpoint, history = fit(
        x, labels, x[-1:], labels[-1:], settings, seed=0, device=torch.device("cpu"), progress=False
    )
    assert np.isfinite(history["loss"].iloc[1:]).all()
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    split = np.array(["train"] * (len(labels) - 1) + ["val"])
    table = evaluate_embeddings(x, labels, split, ["family", "kind"])
    undefined = table[table["value"].isna()]
    assert len(undefined) and (undefined["reason"].str.len() > 0).all()
    sil = table.query("split == 'val' and metric == 'silhouette' and level == 'kind'").iloc[0]
    assert np.isnan(sil["value"]) and "1 class(es) among 1 example(s)" in sil["reason"]
    assert np.isfinite(table["value"].dropna()).all()


# --- config -----------------------------------------------------------------------------------


def test_wrong_on_error_value_is_named(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["features"]["on_error"] = "ignore"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "on_error" in out.stdout + out.stderr


# --- untrusted files --------------------------------------------------------------------------

CALLED = []


def _payload(*args):  # what a malicious checkpoint would run on load
    CALLED.append(args)
    return {}


class _Evil:
    def __reduce__(self):
        return (_payload, ("pwned",))


def _tiny_checkpoint(path: Path) -> None:
    from rbl.model import Embedder

    model = Embedder(8, 3)
    torch.save(
        {"state_dict": model.state_dict(), "model": model.config, "epoch": 0, "val_silhouette": 0.0, "seed": 0}, path
    )


def _embed(io, folder: Path, checkpoint: Path):
    np.savez(folder / "x.npz", x=np.zeros((4, 8), np.float32))
    return run(io, "embed", "--features", folder / "x.npz", "--checkpoint", checkpoint, "--out", folder / "e.npz")


def test_checkpoints_load_with_weights_only(io, tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path / "ok.pt")
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k) or real(*a, **k))
    assert _embed(io, tmp_path, tmp_path / "ok.pt")[0] == 0
    assert seen and all(k.get("weights_only") is True for k in seen)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_a_malicious_global_is_refused(io, tmp_path):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"state_dict": _Evil(), "model": {}}, handle)
    torch.save({"state_dict": _Evil(), "model": {}}, tmp_path / "evil_zip.pt")
    for name in ("evil.pt", "evil_zip.pt"):
        code, err = _embed(io, tmp_path, tmp_path / name)
        assert code == 2 and f"{name}: refused" in err and "Traceback" not in err
    assert CALLED == []  # the payload never ran


def test_damaged_checkpoint_is_explained(io, tmp_path):
    _tiny_checkpoint(tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    code, err = _embed(io, tmp_path, tmp_path / "cut.pt")
    assert code == 2 and "cut.pt: not a readable checkpoint" in err and "rerun training" in err


def test_no_unsafe_loading_in_the_package():
    """Every numpy load refuses pickles, every torch.load is weights_only, YAML is loaded safely."""
    sources = list((REPO / "src/rbl").rglob("*.py")) + [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]
    problems = []
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            where = f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            if re.search(r"\bnp\.load\(", line) and "allow_pickle=False" not in line:
                problems.append(where)
            if re.search(r"\btorch\.load\(", line) and "weights_only=True" not in line:
                problems.append(where)
            if re.search(
                r"allow_pickle=True|weights_only=False|pickle\.loads?\(|yaml\.(unsafe_)?load\(|"
                r"yaml\.full_load|read_pickle|(?<![.\w])(eval|exec)\(",
                line,
            ):
                problems.append(where)
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


# --- the workflow -----------------------------------------------------------------------------


def _workflow(workdir: Path, on_error: str, *targets: str) -> subprocess.CompletedProcess:
    write_dataset(workdir / "data")
    add_clip(workdir / "data", "broken.wav", "b1", _wav_bytes(tone(1.0, 300))[:9000])
    config = {
        "dataset": {
            "name": "bad",
            "audio_root": "data/audio",
            "annotations": "data/annotations.csv",
            "taxonomy": "data/taxonomy.csv",
        },
        "split": {"seed": 0, "unseen_per_parent": 0, "fractions": {"train": 0.6, "val": 0.2, "test_seen": 0.2}},
        "features": {
            "extractor": "logmel",
            "shards": 2,
            "cache_dir": "cache",
            "batch_clips": 8,
            "workers": 1,
            "device": "cpu",
            "on_error": on_error,
            "vggish": {"weights_dir": "weights", "download": False, "final_relu": True, "verify": True},
        },
        "train": {"device": "cpu"},
        "seeds": [0],
        # Training on a skipped clip is excluded the same way (test_skipped_clip_takes_part_in_no_stage).
        "experiments": {"InitEmb": {"loss": "none"}},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return snakemake(workdir, *targets)


def test_workflow_stops_on_an_undecodable_clip_by_default(tmp_path):
    out = _workflow(tmp_path, "stop", "results/bad/features/logmel.json")
    assert out.returncode != 0
    log = (tmp_path / "results/bad/logs/extract/1.log").read_text()
    assert "error:" in log and "broken.wav: truncated" in log and "features.on_error: skip" in log
    assert "Traceback" not in log


def test_workflow_skips_reports_and_excludes_an_undecodable_clip(tmp_path):
    out = _workflow(tmp_path, "skip", "results/bad/metrics/InitEmb/seed0.json")
    assert out.returncode == 0, out.stderr[-3000:]
    results = tmp_path / "results/bad"
    skipped = pd.read_csv(results / "skipped.csv")
    assert skipped["file"].tolist() == ["broken.wav"] and "truncated" in skipped["reason"][0]
    info = json.loads((results / "features/logmel.json").read_text())
    assert info["skipped"] == 1 and info["skipped_file"] == "results/bad/skipped.csv" and info["n_clips"] == 25
    assert len(pd.read_csv(results / "manifest.csv")) == 25  # the manifest records every input
    splits = pd.read_csv(results / "splits.csv").set_index("file")["split"]
    assert splits["broken.wav"] == SKIPPED and (splits == SKIPPED).sum() == 1
    metrics = json.loads((results / "metrics/InitEmb/seed0.json").read_text())
    assert metrics["skipped"] == 1
    n = {r["split"]: r["n"] for r in metrics["metrics"] if r["metric"] == "silhouette" and r["level"] == "family"}
    assert n == {s: int((splits == s).sum()) for s in ("val", "test_seen", "test_unseen")}  # the skipped one nowhere
    assert all(np.isfinite(r["value"]) for r in metrics["metrics"] if r["value"] is not None)
