"""The authors' CSV format -> annotations and taxonomy; precomputed feature loading."""

import numpy as np
import pandas as pd
import pytest

from rbl.convert import authors_csv
from rbl.errors import InputError
from rbl.features import load_precomputed

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared/data/tut2016-vggish"


def test_authors_format_by_hand():
    train = pd.DataFrame({"": ["0", "1"], "wavfilename": ["a001_0_30.wav", "b002_30_60.wav"],
                          "hierarchical_labels": ["metro-station_INDOOR", "bus_VEHICLE"]})
    ann, tax = authors_csv({"train": train})
    assert ann.to_dict("records")[0] == {"file": "train/a001_0_30.wav", "label": "INDOOR/metro-station",
                                         "group": "a001", "split": "train"}
    assert tax.values.tolist() == [["INDOOR", "metro-station"], ["VEHICLE", "bus"]]


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
