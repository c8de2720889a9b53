"""Converters from other annotation formats to this project's annotations.csv and taxonomy.csv.

`authors_csv`: the example data published with the RbL paper's code (TUT Acoustic Scenes 2016):
one CSV per split with columns `<index>, wavfilename, hierarchical_labels`, the label written
`fine_COARSE` (e.g. `metro-station_INDOOR`), and one feature file per clip in a folder named after
the split (`train/a001_30_60.npy` for `a001_30_60.wav`). Clips are 30 s segments of longer
recordings named `<recording>_<start>_<end>.wav`; the recording becomes the group.

Their repository (example_data/) publishes train.csv (480 clips), val.csv (192) and test.csv (30,
with an extra index column), each with its feature folder. The test clips are of the same 9 scenes
as training, so they become `test_seen`; the authors split by clip, not by recording (every test
clip's recording also has training clips), and the converted split keeps theirs as it is.
"""

from __future__ import annotations

import pandas as pd

from rbl.errors import InputError

AUTHORS_SPLITS = {"train": "train", "val": "val", "test": "test_seen"}


def authors_csv(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, taxonomy) from the authors' per-split tables, keyed by their split name."""
    rows = []
    for name, table in tables.items():
        for column in ("wavfilename", "hierarchical_labels"):
            if column not in table.columns:
                raise InputError(f"{name}.csv: no '{column}' column; is this the authors' format?")
        for line, (wav, label) in enumerate(zip(table["wavfilename"], table["hierarchical_labels"]), start=2):
            fine, sep, coarse = str(label).rpartition("_")
            if not sep or not fine or not coarse:
                raise InputError(f"{name}.csv line {line}: label '{label}' is not of the form fine_COARSE")
            rows.append(
                {
                    "file": f"{name}/{wav}",
                    "label": f"{coarse}/{fine}",
                    "group": str(wav).split("_")[0],
                    "split": AUTHORS_SPLITS[name],
                    "scene_type": coarse,
                    "scene": fine,
                }
            )
    frame = pd.DataFrame(rows)
    taxonomy = frame[["scene_type", "scene"]].drop_duplicates().sort_values(["scene_type", "scene"])
    return frame[["file", "label", "group", "split"]], taxonomy.reset_index(drop=True)
