"""Input tables: reading CSVs, validating annotations against the taxonomy, the manifest.

The manifest is the one table later stages read: one row per clip with its resolved path, content
hash, the label as given, the node name at every taxonomy level (empty where unknown), its group
and any explicit split.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pandas as pd

from rbl.errors import InputError
from rbl.taxonomy import Taxonomy, control_character

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test_seen", "test_unseen")
# The split of a clip left out because its audio could not be decoded (features.on_error: skip):
# it stays in the manifest, is listed in skipped.csv and takes part in no split.
SKIPPED = "skipped"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV of strings (UTF-8, a BOM tolerated); a wrong encoding gets a clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8 and rerun") from None
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: not a valid CSV ({err})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file; it needs a header row") from None
    except OSError as err:  # unreadable (permissions), a folder, a symlink loop
        raise InputError(f"{path}: cannot be read ({err.strerror or err}); check the file and its permissions") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_taxonomy(path: str | os.PathLike) -> Taxonomy:
    return Taxonomy.from_frame(read_csv(path), source=str(path))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _resolve(root: Path, rel: str, where: str, suffix: str | None) -> Path:
    """The path of an annotation's file under root, refusing any path that leaves the root.

    With `suffix`, the file's extension is replaced (precomputed features: clip.wav -> clip.npy).
    """
    if not rel:
        raise InputError(f"{where}: the 'file' cell is empty")
    if os.path.isabs(rel) or Path(rel).drive:
        raise InputError(f"{where}: '{rel}' is an absolute path; give paths relative to the root folder {root}")
    path = root / rel
    if suffix is not None:
        path = path.with_suffix(suffix)
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise InputError(f"{where}: '{rel}' cannot be resolved ({err}); fix or remove the symlink") from None
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(f"{where}: '{rel}' points outside the root folder {root} (via '..' or a symlink); refused")
    return path


def build_manifest(annotations: pd.DataFrame, taxonomy: Taxonomy, root: Path, source: str,
                   suffix: str | None = None) -> pd.DataFrame:
    """Validate annotation rows against the taxonomy and the files under root; one manifest row each.

    `root` holds the audio, or (with suffix=".npy") one precomputed feature vector per clip.
    """
    for column in ("file", "label"):
        if column not in annotations.columns:
            separator = next((f" (it looks {name}-separated: save it with commas)" for sep, name in
                              ((";", "semicolon"), ("\t", "tab")) if any(sep in c for c in annotations.columns)), "")
            raise InputError(f"{source}: no '{column}' column (columns are {list(annotations.columns)}){separator}; "
                             "annotations need 'file' and 'label', optionally 'group' and 'split'")
    if len(annotations) == 0:
        raise InputError(f"{source}: no rows")
    rows, missing, first_line = [], [], {}
    has_split = "split" in annotations.columns
    for line, record in enumerate(annotations.to_dict("records"), start=2):
        where = f"{source} line {line}"
        for column in ("file", "label", "group", "split"):
            if (bad := control_character(str(record.get(column, "")).strip())) is not None:
                raise InputError(f"{where}: the '{column}' cell {record[column]!r} holds the control character "
                                 f"'{bad}' (a line break or the like), which no table of the pipeline can carry; "
                                 "rename it")
        rel = record["file"].strip().replace("\\", "/")
        if rel in first_line:
            raise InputError(f"{where}: '{rel}' is listed again (first at line {first_line[rel]}); keep one row per file")
        first_line[rel] = line
        path = _resolve(root, rel, where, suffix)
        if not record["label"].strip():
            raise InputError(f"{where}: the 'label' cell is empty; give a taxonomy node (a leaf, an inner node "
                             "for an incomplete label, or a path 'parent/child')")
        try:
            node = taxonomy.resolve(record["label"])
        except KeyError as err:
            raise InputError(f"{where}: label {err.args[0]}") from None
        split = record.get("split", "").strip() if has_split else ""
        if split and split not in SPLITS:
            raise InputError(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
        if not path.is_file():
            missing.append(f"{where}: {path}")
        group = str(record.get("group", "")).strip() or rel
        row = {"file": rel, "path": str(path), "label": record["label"].strip(), "group": group, "split": split}
        row.update({level: (node[i] if i < len(node) else "") for i, level in enumerate(taxonomy.levels)})
        rows.append(row)
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise InputError(f"{len(missing)} annotated file(s) not found:\n  {shown}{more}\n"
                         "fix the paths in the annotations or the dataset's audio_root / features_dir")
    manifest = pd.DataFrame(rows)
    if has_split and (manifest["split"] == "").any() and (manifest["split"] != "").any():
        line = int((manifest["split"] == "").to_numpy().argmax()) + 2
        raise InputError(f"{source} line {line}: the split column is filled for some rows but not this one; "
                         "fill it for every row or leave the column out")
    return manifest


def unlisted_files(root: Path, listed: set[str], suffixes: set[str]) -> list[str]:
    """Files of the given kinds under the root that no annotation names (reported, never used)."""
    found = []

    def unreadable(err: OSError) -> None:  # os.walk would skip the folder without a word
        log.warning("%s: cannot be listed (%s); unannotated files in it are not reported", err.filename,
                    err.strerror or err)

    for dirpath, _, names in os.walk(root, onerror=unreadable):
        for name in names:
            if Path(name).suffix.lower() in suffixes:
                rel = Path(dirpath, name).relative_to(root).as_posix()
                if rel not in listed:
                    found.append(rel)
    return sorted(found)


def hash_files(paths: list[str], progress: bool = True) -> list[str]:
    """sha256 of every file, in order, with a progress bar."""
    from tqdm import tqdm

    return [file_sha256(p) for p in tqdm(paths, desc="hashing clip files", unit="file", disable=not progress)]


def level_codes(manifest: pd.DataFrame, taxonomy: Taxonomy):
    """(N, L) label codes of manifest rows, from their per-level node names."""
    paths = []
    for names in manifest[list(taxonomy.levels)].itertuples(index=False):
        path = tuple(n for n in names if n)
        paths.append(path)
    return taxonomy.encode(paths)
