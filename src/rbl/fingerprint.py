"""Content hashes of clip files, recomputed only for files whose stat signature changed.

A file's content is its sha256. Hashing every clip on every run costs minutes at 100,000 clips,
and a modification time alone misses a file replaced by other content with an older time
(`cp -p`, `rsync -a`). So a table keeps, per path, the stat signature seen when the file was last
hashed: size, mtime and ctime in nanoseconds, inode and device. Any write, replacement or rename
over the file changes at least the ctime or the inode (ctime cannot be set from user space), so a
file whose signature is unchanged is taken to have the same content; any other file is hashed
again. A touched file gets the same hash back, so it changes nothing downstream.

The table is a CSV (path, signature, sha256; the signature is "size:mtime_ns:ctime_ns:inode:device"),
written atomically; one that cannot be read is ignored (every file is hashed again), never trusted.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from pathlib import Path
from stat import S_ISREG

from rbl.atomic import atomic_path, plain_csv, write_text

log = logging.getLogger(__name__)

COLUMNS = ("path", "signature", "sha256")
Table = dict[str, tuple[str, str]]  # path -> (signature, sha256)


def signature(path: str, st: os.stat_result | None = None) -> str:
    """The stat fields that change whenever the file's content can have changed (`st`: the file's
    os.stat, when the caller has it)."""
    st = os.stat(path) if st is None else st
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def regular_files(paths: list[str]) -> tuple[list[str], list[os.stat_result]]:
    """The paths that are regular files (as os.path.isfile says) and their os.stat, one call each."""
    present, stats = [], []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if S_ISREG(st.st_mode):
            present.append(path)
            stats.append(st)
    return present, stats


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (memory stays flat whatever the file's size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: str | os.PathLike) -> Table:
    """The signatures and hashes recorded at `path` ({} if absent or unreadable: hash again)."""
    import pandas as pd  # its C parser: several times the csv module's speed on 100,000 rows

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        log.warning("%s cannot be read (%s); every clip is hashed again", path, err)
        return {}
    if tuple(frame.columns) != COLUMNS or not frame["sha256"].str.len().eq(64).all():
        log.warning("%s is not a hash table of this version, or is damaged; every clip is hashed again", path)
        return {}
    return dict(zip(frame["path"].tolist(), zip(frame["signature"].tolist(), frame["sha256"].tolist())))


def write_table(path: str | os.PathLike, table: Table) -> None:
    """Write the table atomically (sorted by path, so identical content gives identical bytes)."""
    names = sorted(table)
    rows = [table[name] for name in names]
    text = plain_csv(list(COLUMNS), [names, [sig for sig, _ in rows], [digest for _, digest in rows]])
    if text is not None:
        write_text(path, text)
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([name, *row] for name, row in zip(names, rows))


def content_hashes(
    paths: list[str], known: Table, progress: bool = True, stats: list[os.stat_result] | None = None
) -> tuple[list[str], Table]:
    """sha256 of every file, in order, and the table of these files for the next run.

    Files whose signature matches `known` are not read. `stats`: the files' os.stat, taken by the
    caller before (never after) reading them, to spare a second stat per file. Raises OSError for a
    file that cannot be stat'ed or read (the caller names it).
    """
    from tqdm import tqdm

    if stats is None:
        signatures = [signature(p) for p in paths]
    else:
        signatures = [signature(p, st) for p, st in zip(paths, stats, strict=True)]
    stale = [i for i, (p, sig) in enumerate(zip(paths, signatures)) if known.get(p, (None,))[0] != sig]
    fresh = {}
    for i in tqdm(stale, desc="hashing new or changed clip files", unit="file", disable=not progress or not stale):
        fresh[i] = file_sha256(paths[i])
    digests = [fresh[i] if i in fresh else known[p][1] for i, p in enumerate(paths)]
    return digests, {p: (sig, d) for p, sig, d in zip(paths, signatures, digests)}


def cached_hashes(
    paths: list[str],
    table_path: str | os.PathLike,
    progress: bool = True,
    stats: list[os.stat_result] | None = None,
) -> list[str]:
    """content_hashes with the table at `table_path`, which is rewritten when anything changed."""
    known = read_table(table_path)
    digests, table = content_hashes(paths, known, progress, stats)
    if table != known:
        Path(table_path).parent.mkdir(parents=True, exist_ok=True)
        write_table(table_path, table)
    return digests


def files_under(root: str | os.PathLike, suffix: str) -> list[str]:
    """Every file under root whose name ends with `suffix`, sorted (symlinked folders not followed)."""
    found = []
    for dirpath, _, names in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in names if n.endswith(suffix))
    return sorted(found)


def state_digest(paths: list[str], digests: dict[str, str]) -> str:
    """One digest of which files there are and their content; a path absent from `digests` counts
    as missing, so creating it changes the digest too."""
    state = hashlib.sha256()
    for path in paths:
        state.update(f"{path}\t{digests.get(path, 'missing')}\n".encode())
    return state.hexdigest()[:16]


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_digest(path: str | os.PathLike, hexdigest: str) -> None:
    """Record a file's digest beside it (`<name>.sha256`), with the size and modification time the
    file had when hashed; a read-only folder just means hashing again next time."""
    path = Path(path)
    try:
        stat = path.stat()
        write_text(_marker(path), f"{hexdigest} {stat.st_size} {stat.st_mtime_ns}\n")
    except OSError:
        pass


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The digest in the file's marker if it was recorded for the file as it is now (same size and
    modification time to the nanosecond, as make and Snakemake judge files), else None."""
    path = Path(path)
    try:
        digest, size, mtime_ns = _marker(path).read_text(encoding="utf-8").split()
        stat = path.stat()
        if int(size) == stat.st_size and int(mtime_ns) == stat.st_mtime_ns and re.fullmatch("[0-9a-f]{64}", digest):
            return digest
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return None
