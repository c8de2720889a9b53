"""Readers and writers of the pipeline's files, for the stages: each bad file is an InputError naming it.

Tables, arrays, checkpoints and figures the stages exchange; every write is atomic (rbl.atomic).
Nothing here unpickles: arrays load with allow_pickle=False, checkpoints with weights_only=True.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from rbl.atomic import atomic_path, plain_csv, write_text
from rbl.errors import InputError

log = logging.getLogger("rbl")

SKIPPED_COLUMNS = ["file", "reason"]
STALE_SPLITS = (
    "they were skipped at extraction but the splits predate it: rerun the split stage with "
    "--skipped (the workflow does this itself)"
)


def write_csv(frame: pd.DataFrame, path: str) -> None:
    """Write a table atomically; a cell holding a carriage return is refused, naming the row.

    Python's csv writer quotes a cell only for the line terminator ("\\n"), so a lone "\\r" would be
    written bare and split the row in two on reading. Inputs refuse such names where they enter
    (ingest); this keeps any other path (e.g. converted tables) from writing a broken file.
    """
    columns = [frame[c].tolist() for c in frame.columns]
    for column, values in zip(frame.columns, columns):
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        if all(type(v) is str for v in values) and "\r" not in "".join(values):
            continue  # (the common case, checked at C speed; the row is looked for below)
        cells = frame[column].astype(str)
        bad = cells.str.contains("\r", regex=False).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise InputError(
                f"{path}: row {row + 2}, column '{column}': {cells.iloc[row]!r} holds a carriage "
                "return, which the table cannot carry; remove it from the input"
            )
    text = plain_csv([str(c) for c in frame.columns], columns) if len(frame) else None
    if text is not None:  # the bytes pandas writes, in half the time (rbl.atomic.plain_csv)
        write_text(path, text)
        return
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_table(path, columns: list[str] | None = None) -> pd.DataFrame:
    """A CSV of ours or the user's, every cell a string (rbl.data.read_csv: names the file when
    unreadable); `columns`: only these."""
    from rbl.data import read_csv

    return read_csv(path, columns)


def read_labels(manifest_path: str, taxonomy_path: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The manifest, its (N, depth) class codes per taxonomy level, and the level names."""
    from rbl.data import level_codes, load_taxonomy

    taxonomy = load_taxonomy(taxonomy_path)
    manifest = read_table(manifest_path)
    return manifest, level_codes(manifest, taxonomy), list(taxonomy.levels)


def read_splits(manifest: pd.DataFrame, splits_path: str) -> np.ndarray:
    """The split of every manifest row; `skipped` rows (undecodable clips) belong to none."""
    from rbl.data import SKIPPED, SPLITS

    splits = read_table(splits_path)
    if "file" not in splits.columns or "split" not in splits.columns:
        raise InputError(f"{splits_path}: needs the columns file and split; rerun the split stage")
    if list(splits["file"]) != list(manifest["file"]):
        raise InputError(f"{splits_path}: rows do not match the manifest; rerun the split stage")
    split = splits["split"].to_numpy()
    unknown = sorted(set(split) - set(SPLITS) - {SKIPPED})
    if unknown:
        raise InputError(f"{splits_path}: unknown split name(s) {unknown}; rerun the split stage")
    return split


def require_finite(
    values: np.ndarray, split: np.ndarray, manifest: pd.DataFrame, path: str, why: str = STALE_SPLITS
) -> None:
    """Rows that a split uses must hold numbers: a NaN row is a skipped clip the splits do not know of."""
    from rbl.data import SPLITS

    bad = np.isin(split, SPLITS) & ~np.isfinite(values).all(axis=1)
    if bad.any():
        files = list(manifest["file"][bad][:3])
        raise InputError(f"{path}: {int(bad.sum())} clip(s) in the splits hold NaN or Inf, e.g. {files}; {why}")


def load_array(path: str, key: str | None = None) -> np.ndarray:
    """An array from a .npy (or one entry of a .npz) of ours; never unpickles anything."""
    try:
        data = np.load(path, allow_pickle=False)
        if key is None:
            return data
        with data:
            return data[key]
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; rerun the stage that writes it") from None
    except KeyError:
        raise InputError(f"{path}: has no '{key}' array; rerun the stage that writes it") from None
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable numpy file ({err}); rerun the stage that writes it") from None


def load_checkpoint(path: str, device):
    """A training checkpoint, loaded with weights_only=True: tensors and plain containers, no code."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint not found; rerun training") from None
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: refused: the checkpoint holds more than weights ({first}); only files "
            "written by `rbl train` are loaded: retrain, and never load checkpoints from "
            "untrusted sources"
        ) from None
    except (RuntimeError, ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable checkpoint ({err}); rerun training") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "model"} <= set(checkpoint):
        raise InputError(f"{path}: not a checkpoint of `rbl train` (no state_dict/model); rerun training")
    return checkpoint


def write_features(feats: np.ndarray, info: dict, out: str, info_path: str) -> None:
    """The feature matrix (.npy) and its extraction record (.json)."""
    with atomic_path(out) as tmp:
        np.save(tmp, feats)
    write_text(info_path, json.dumps(info, indent=2))


def write_skipped(clips: list[dict], path: str, info: dict, keep_list: bool) -> None:
    """skipped.csv (file, reason: one row per clip left out); the record gets its path.

    A shard's record keeps the list too (gather merges it); the gathered record keeps only the
    count `skipped` and the path `skipped_file`.
    """
    write_csv(pd.DataFrame(clips, columns=SKIPPED_COLUMNS), path)
    if not keep_list:
        info.pop("skipped_clips", None)
    info["skipped_file"] = path
    if clips:
        log.warning("%d clip(s) could not be used and were skipped; listed in %s", len(clips), path)


def save_figure(fig, out: str) -> None:
    """A matplotlib figure as an image (format from the suffix), closed afterwards."""
    import matplotlib.pyplot as plt

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
