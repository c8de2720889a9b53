"""Input tables: reading CSVs, validating annotations against the taxonomy, the manifest.

The manifest is the one table later stages read: one row per clip with its resolved path, content
hash, the label as given, the node name at every taxonomy level (empty where unknown), its group
and any explicit split.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from pathlib import Path
from stat import S_ISREG

import pandas as pd

from rbl.errors import InputError
from rbl.taxonomy import CONTROL, Taxonomy, control_character

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test_seen", "test_unseen")
# The splits evaluated and drawn (all but train). The one list of split names: the workflow's
# wildcard constraints, the evaluation and the CLI's choices take them from here; the config
# schema's fractions keys and enums are checked against them (tests/test_cli_options.py).
EVAL_SPLITS = SPLITS[1:]
# The held-out classes' split, and the splits the other clips are drawn into by split.fractions.
UNSEEN = SPLITS[-1]
DRAWN_SPLITS = SPLITS[:-1]
# The split of a clip left out because its audio could not be decoded (features.on_error: skip):
# it stays in the manifest, is listed in skipped.csv and takes part in no split.
SKIPPED = "skipped"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def read_csv(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV of strings (UTF-8, a BOM tolerated); a wrong encoding gets a clear error.

    `columns`: read only these (a table of ours, whose header names them as given); at 100,000
    rows one column of the manifest reads in a third of the time of all eight.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True, usecols=columns
        )
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8 and rerun") from None
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: not a valid CSV ({err})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file; it needs a header row") from None
    except ValueError as err:  # (after its subclasses above) usecols: a column is missing
        if columns is None:
            raise
        raise InputError(
            f"{path}: needs the columns {', '.join(columns)} ({err}); rerun the stage that writes it"
        ) from None
    except OSError as err:  # unreadable (permissions), a folder, a symlink loop
        raise InputError(
            f"{path}: cannot be read ({err.strerror or err}); check the file and its permissions"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_taxonomy(path: str | os.PathLike) -> Taxonomy:
    return Taxonomy.from_frame(read_csv(path), source=str(path))


def _refuse_control_characters(where: str, column: str, value: str) -> None:
    if (bad := control_character(value)) is not None:
        raise InputError(
            f"{where}: the '{column}' cell {value!r} holds the control character '{bad}' (a line "
            "break or the like), which no table of the pipeline can carry; rename it"
        )


# How many files of one folder are checked for symlinks one by one (lstat) before the folder is
# listed once instead: at 100,000 clips in a dozen folders, an lstat per file was a third of
# resolving them (benchmarks/README.md, "Measurements behind the code").
LIST_FOLDER_AFTER = 64
_DRIVE = re.compile(r"[A-Za-z]:/")


class _Folder:
    """A folder of annotated files: its resolved path (with a final '/'), and which of its files are
    symbolic links, as os.path.islink says.

    After LIST_FOLDER_AFTER files, the folder is listed once (os.scandir: the entry types come with
    the names) and answered from the listing; a folder that cannot be listed is asked file by file,
    as are the first files of every folder (a few annotated files in a folder of millions never
    list it).
    """

    def __init__(self, folder: str) -> None:
        self.real = os.path.join(os.path.realpath(folder), "")
        self.asked = 0
        self.links: set[str] | None = None

    def is_link(self, file: str) -> bool:
        if self.links is not None:
            return file in self.links
        self.asked += 1
        if self.asked == LIST_FOLDER_AFTER + 1:
            try:
                with os.scandir(self.real) as entries:
                    self.links = {entry.name for entry in entries if entry.is_symlink()}
                return file in self.links
            except OSError:
                pass  # unlistable (or gone): file by file
        return os.path.islink(self.real + file)


def _resolver(root: Path, suffix: str | None):
    """A function (rel, where) -> (name, path, real) of an annotation's file under root, refusing
    any path that leaves the root (via '..' or a symlink).

    `name` is the path relative to root with `.`, `..` and repeated slashes collapsed, so `./x.wav`
    and `sub/../x.wav` both name `x.wav`; `path` is root/name (with `suffix`, the extension
    replaced: precomputed features, clip.wav -> clip.npy); `real` is the file's resolved path, the
    same for every spelling of one file, symlinks inside the root included. Each folder is
    resolved once, and a folder of many files is listed once for its symlinks (`_Folder`):
    resolving every file, then an lstat per file, were most of this at 100,000 clips
    (benchmarks/README.md). `where` may be a function giving the row's place, called on errors only.
    """
    base = str(root)
    prefix = os.path.join(base, "")  # os.path.join(base, name) is prefix + name: name is relative
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    folders: dict[str, _Folder] = {}
    normpath, splitext = posixpath.normpath, os.path.splitext

    def refuse(rel: str, where) -> None:
        where = where() if callable(where) else where
        if not rel:
            raise InputError(f"{where}: the 'file' cell is empty")
        _refuse_control_characters(where, "file", rel)
        if os.path.isabs(rel) or _DRIVE.match(rel):
            raise InputError(f"{where}: '{rel}' is an absolute path; give paths relative to the root folder {root}")

    def resolve(rel: str, where) -> tuple[str, str, str]:
        # (isprintable: no control character; the exact checks only for the rare other names)
        if not rel or not rel.isprintable() or rel[0] == "/" or rel[1:3] == ":/":
            refuse(rel, where)
        name = normpath(rel)
        path = prefix + name
        if suffix is not None:
            path = splitext(path)[0] + suffix
        cut = path.rfind("/") + 1
        key, file = path[:cut], path[cut:]
        folder = folders.get(key)
        if folder is None:
            folder = folders[key] = _Folder(posixpath.split(path)[0])
        real = folder.real + file
        if folder.is_link(file):
            try:
                real = os.path.realpath(real, strict=True)
            except FileNotFoundError:  # a dangling link: reported with the missing files
                real = os.path.realpath(real)
            except OSError as err:  # ELOOP: a symlink loop
                where = where() if callable(where) else where
                raise InputError(
                    f"{where}: '{rel}' cannot be resolved ({err.strerror}); fix or remove the symlink"
                ) from None
        if not real.startswith(inside) or name == ".." or name.startswith("../"):
            where = where() if callable(where) else where
            raise InputError(f"{where}: '{rel}' points outside the root folder {root} (via '..' or a symlink); refused")
        return name, path, real

    return resolve


def require_columns(annotations: pd.DataFrame, source: str, columns: tuple[str, ...]) -> None:
    """Raise, naming the table and what to do, when an annotations column is missing."""
    for column in columns:
        if column not in annotations.columns:
            separator = next(
                (
                    f" (it looks {name}-separated: save it with commas)"
                    for sep, name in ((";", "semicolon"), ("\t", "tab"))
                    if any(sep in c for c in annotations.columns)
                ),
                "",
            )
            raise InputError(
                f"{source}: no '{column}' column (columns are {list(annotations.columns)}){separator}; "
                "annotations need 'file' and 'label', optionally 'group' and 'split'"
            )


def _node(taxonomy: Taxonomy, label: str) -> tuple[str, ...] | str:
    """The taxonomy node a label cell names, or the message why it names none."""
    if not label.strip():
        return (
            "the 'label' cell is empty; give a taxonomy node (a leaf, an inner node "
            "for an incomplete label, or a path 'parent/child')"
        )
    try:
        return taxonomy.resolve(label)
    except KeyError as err:
        return f"label {err.args[0]}"


def build_manifest(
    annotations: pd.DataFrame,
    taxonomy: Taxonomy,
    root: Path,
    source: str,
    suffix: str | None = None,
    stats: list[os.stat_result] | None = None,
) -> pd.DataFrame:
    """Validate annotation rows against the taxonomy and the files under root; one manifest row each.

    `root` holds the audio, or (with suffix=".npy") one precomputed feature vector per clip. Rows
    keep the annotations' order (manifest row i is annotation line i + 2), so later stages can
    name annotation lines; `file` is the normalised path (see _resolver). `stats`, when given, gets
    each row's os.stat (taken to see that the file is there: ingest's content hashes reuse it).
    """
    require_columns(annotations, source, ("file", "label"))
    if len(annotations) == 0:
        raise InputError(f"{source}: no rows")
    resolve = _resolver(root, suffix)
    missing, first = [], {}
    has_split = "split" in annotations.columns
    n = len(annotations)
    # Column by column, not a dict per row: at 100,000 rows the per-row Python was most of ingest.
    cells = {c: annotations[c].tolist() if c in annotations.columns else [""] * n for c in ("label", "group", "split")}
    # A column without control characters needs no check per row (stripping only removes characters).
    checked = [c for c in ("label", "group", "split") if any(map(CONTROL.search, map(str, cells[c])))]
    nodes: dict[str, tuple[str, ...] | str] = {}  # label as given -> node path, or why it is refused
    columns: dict[str, list] = {name: [] for name in ("file", "path", "label", "group", "split")}
    node_paths: list[tuple[str, ...]] = []
    found = [] if stats is None else stats
    for line, (given, label, group, split) in enumerate(
        zip(annotations["file"].tolist(), cells["label"], cells["group"], cells["split"]), start=2
    ):
        for column in checked:
            _refuse_control_characters(f"{source} line {line}", column, str(cells[column][line - 2]).strip())
        given = given.strip().replace("\\", "/")
        rel, path, key = resolve(given, lambda line=line: f"{source} line {line}")
        # The same file under another spelling (./x.wav, sub/../x.wav, a symlink inside the root,
        # or x.wav and x.flac that share x.npy) is the same clip: a repeated row, not a new one.
        if key in first:
            line0, given0 = first[key]
            same = f"'{given}'" if given == given0 else f"'{given}' (the same file as '{given0}')"
            raise InputError(
                f"{source} line {line}: {same} is listed again (first at line {line0}); keep one row per file"
            )
        first[key] = (line, given)
        node = nodes.get(label)
        if node is None:
            node = nodes[label] = _node(taxonomy, label)
        if isinstance(node, str):
            raise InputError(f"{source} line {line}: {node}")
        split = split.strip() if has_split else ""
        if split and split not in SPLITS:
            raise InputError(f"{source} line {line}: split '{split}' is not one of {', '.join(SPLITS)}")
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            st = None
        if st is None or not S_ISREG(st.st_mode):  # os.path.isfile, keeping the stat
            missing.append(f"{source} line {line}: {path}")
        else:
            found.append(st)
        columns["file"].append(rel)
        columns["path"].append(path)
        columns["label"].append(label.strip())
        columns["group"].append(str(group).strip() or rel)
        columns["split"].append(split)
        node_paths.append(node)
    if missing:
        shown = "\n  ".join(missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise InputError(
            f"{len(missing)} annotated file(s) not found:\n  {shown}{more}\n"
            "fix the paths in the annotations or the dataset's audio_root / features_dir"
        )
    for i, level in enumerate(taxonomy.levels):
        columns[level] = [node[i] if i < len(node) else "" for node in node_paths]
    manifest = pd.DataFrame(columns)
    if has_split and (manifest["split"] == "").any() and (manifest["split"] != "").any():
        line = int((manifest["split"] == "").to_numpy().argmax()) + 2
        raise InputError(
            f"{source} line {line}: the split column is filled for some rows but not this one; "
            "fill it for every row or leave the column out"
        )
    return manifest


def unlisted_files(root: Path, listed: set[str], suffixes: set[str]) -> list[str]:
    """Files of the given kinds under the root that no annotation names (reported, never used).

    `listed` holds paths relative to the root, '/'-separated.
    """
    found = []

    def unreadable(err: OSError) -> None:  # os.walk would skip the folder without a word
        log.warning(
            "%s: cannot be listed (%s); unannotated files in it are not reported", err.filename, err.strerror or err
        )

    start = len(str(root).rstrip(os.sep)) + 1
    for dirpath, _, names in os.walk(root, onerror=unreadable):
        folder = dirpath[start:].replace(os.sep, "/")
        prefix = f"{folder}/" if folder else ""
        # the names not listed first (a set lookup), then their suffix: nearly every file is listed
        for name in names:
            rel = prefix + name
            if rel not in listed and os.path.splitext(name)[1].lower() in suffixes:
                found.append(rel)
    return sorted(found)


def annotated_paths(table: str | os.PathLike, root: Path, suffix: str | None = None) -> list[str]:
    """The file path of every annotation row, as `build_manifest` resolves it (same errors).

    Read before any job runs, to fingerprint the clips' content, so it checks only what that needs:
    the table is readable, has a 'file' column, and no path leaves the root.
    """
    frame = read_csv(table)
    require_columns(frame, str(table), ("file", "label"))
    resolve = _resolver(root, suffix)
    return [
        resolve(rel.strip().replace("\\", "/"), f"{table} line {line}")[1]
        for line, rel in enumerate(frame["file"], start=2)
    ]


def level_codes(manifest: pd.DataFrame, taxonomy: Taxonomy):
    """(N, L) label codes of manifest rows, from their per-level node names."""
    paths = []
    for names in manifest[list(taxonomy.levels)].itertuples(index=False):
        path = tuple(n for n in names if n)
        paths.append(path)
    return taxonomy.encode(paths)
