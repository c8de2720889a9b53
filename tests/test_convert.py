"""The authors' CSV format -> annotations and taxonomy; precomputed feature loading."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rbl.cli import main
from rbl.convert import authors_csv
from rbl.errors import InputError
from rbl.extraction import load_precomputed

from runs import snakemake as run_workflow

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared/data/tut2016-vggish"
# The header and two rows of the authors' example_data/test.csv (30 rows; an extra index column).
TEST_CSV = (
    ",Unnamed: 0,wavfilename,hierarchical_labels\n12,12,a003_60_90.wav,residential-area_OUTDOOR\n"
    "113,165,a045_0_30.wav,bus_VEHICLE\n"
)


def authors_folder(folder: Path, test: bool) -> Path:
    """A small folder in the authors' layout: <split>.csv and <split>/<clip>.npy."""
    tables = {"train": ["a001_0_30", "a002_0_30", "a003_0_30", "a004_0_30"], "val": ["a001_30_60", "a002_30_60"]}
    labels = ["bus_VEHICLE", "residential-area_OUTDOOR"]
    for name, clips in tables.items():
        rows = [(f"{clip}.wav", labels[i % 2]) for i, clip in enumerate(clips)]
        pd.DataFrame(rows, columns=["wavfilename", "hierarchical_labels"]).to_csv(folder / f"{name}.csv")
        (folder / name).mkdir()
        for i, clip in enumerate(clips):
            np.save(folder / name / f"{clip}.npy", np.full(4, len(name) * 10 + i, np.float32))
    if test:
        add_test(folder)
    return folder


def add_test(folder: Path) -> None:
    """The authors' test.csv (two of its rows) and their feature files."""
    (folder / "test.csv").write_text(TEST_CSV)
    (folder / "test").mkdir()
    for i, clip in enumerate(["a003_60_90", "a045_0_30"]):
        np.save(folder / "test" / f"{clip}.npy", np.full(4, 100 + i, np.float32))


def test_authors_format_by_hand():
    train = pd.DataFrame(
        {
            "": ["0", "1"],
            "wavfilename": ["a001_0_30.wav", "b002_30_60.wav"],
            "hierarchical_labels": ["metro-station_INDOOR", "bus_VEHICLE"],
        }
    )
    ann, tax = authors_csv({"train": train})
    assert ann.to_dict("records")[0] == {
        "file": "train/a001_0_30.wav",
        "label": "INDOOR/metro-station",
        "group": "a001",
        "split": "train",
    }
    assert tax.values.tolist() == [["INDOOR", "metro-station"], ["VEHICLE", "bus"]]


def test_authors_test_split_is_test_seen():
    test = pd.read_csv(__import__("io").StringIO(TEST_CSV), dtype=str, keep_default_na=False)
    ann, tax = authors_csv({"test": test})
    assert ann.to_dict("records") == [
        {"file": "test/a003_60_90.wav", "label": "OUTDOOR/residential-area", "group": "a003", "split": "test_seen"},
        {"file": "test/a045_0_30.wav", "label": "VEHICLE/bus", "group": "a045", "split": "test_seen"},
    ]


@pytest.mark.parametrize("test", [False, True])
def test_convert_command_reads_test_csv_when_present(tmp_path, test):
    folder = authors_folder(tmp_path, test)
    out = tmp_path / "out"
    assert (
        main(
            [
                "--quiet",
                "convert-authors",
                "--dir",
                str(folder),
                "--out-annotations",
                str(out / "ann.csv"),
                "--out-taxonomy",
                str(out / "tax.csv"),
            ]
        )
        == 0
    )
    ann = pd.read_csv(out / "ann.csv")
    expected = {"train": 4, "val": 2, **({"test_seen": 2} if test else {})}
    assert ann["split"].value_counts().to_dict() == expected
    assert (ann.loc[ann.split == "test_seen", "file"].tolist() == ["test/a003_60_90.wav", "test/a045_0_30.wav"]) == test


def test_convert_command_needs_train_and_val(tmp_path, capsys):
    folder = authors_folder(tmp_path, test=True)
    (folder / "val.csv").unlink()
    assert (
        main(
            [
                "convert-authors",
                "--dir",
                str(folder),
                "--out-annotations",
                str(tmp_path / "a.csv"),
                "--out-taxonomy",
                str(tmp_path / "t.csv"),
            ]
        )
        == 2
    )
    assert "val.csv: file not found" in capsys.readouterr().err


def test_rule_reruns_when_test_csv_is_added(tmp_path):
    """The convert_authors rule takes test.csv as an input once it appears (even with an old mtime)."""
    (tmp_path / "authors").mkdir()
    authors_folder(tmp_path / "authors", test=False)
    config = yaml.safe_load((REPO / "config/tut2016.yaml").read_text())
    config["dataset"].update(
        features_dir="authors",
        authors_csv_dir="authors",
        annotations="input/annotations.csv",
        taxonomy="input/taxonomy.csv",
    )
    config["experiments"] = {"InitEmb": {"loss": "none"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        out = run_workflow(tmp_path, *args, "input/annotations.csv", cores=1)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout + out.stderr

    snakemake()
    assert "Nothing to be done" in snakemake("-n")
    add_test(tmp_path / "authors")
    for path in [tmp_path / "authors/test.csv", *(tmp_path / "authors/test").iterdir()]:
        os.utime(path, (946684800, 946684800))  # 2000: older than the outputs, as `cp -p` would leave it
    assert "rule convert_authors" in snakemake("-n")
    snakemake()
    assert (pd.read_csv(tmp_path / "input/annotations.csv")["split"] == "test_seen").sum() == 2


def test_bad_label_names_the_row():
    table = pd.DataFrame({"wavfilename": ["x.wav"], "hierarchical_labels": ["nocoarse"]})
    with pytest.raises(InputError, match="val.csv line 2: label 'nocoarse'"):
        authors_csv({"val": table})


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared TUT data not beside the repository")
def test_real_tut_data_converts_to_nine_scenes_under_three_types():
    tables = {s: pd.read_csv(SHARED / f"{s}.csv", dtype=str, keep_default_na=False) for s in ("train", "val")}
    ann, tax = authors_csv(tables)
    assert len(ann) == 672 and ann["split"].value_counts().to_dict() == {"train": 480, "val": 192}
    assert sorted(tax["scene_type"].unique()) == ["INDOOR", "OUTDOOR", "VEHICLE"] and len(tax) == 9
    paths = [str(SHARED / f).replace(".wav", ".npy") for f in ann["file"]]
    x = load_precomputed(paths)
    assert x.shape == (672, 128) and np.isfinite(x).all()


def test_precomputed_features_refuse_nan_and_shape_mismatch(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(4, np.float32))
    np.save(tmp_path / "b.npy", np.array([0, np.nan, 0, 0], np.float32))
    np.save(tmp_path / "c.npy", np.zeros(5, np.float32))
    with pytest.raises(InputError, match="b.npy: holds NaN or Inf"):
        load_precomputed([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")])
    with pytest.raises(InputError, match="c.npy: 5 values where .*a.npy has 4"):
        load_precomputed([str(tmp_path / "a.npy"), str(tmp_path / "c.npy")])
