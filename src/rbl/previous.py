"""The feature matrix of the previous extraction, a first lookup for the next one.

After a few clips are added, a rerun of extraction reads every other clip's vector again. From
the per-clip cache (rbl.cache) that is one file per clip: 0.55 to 1.0 s per 50,000 clips on the
2-core machine of benchmarks/README.md ("Workflow at scale"). The matrix the last run gathered
holds the same vectors in one file: the same 50,000 rows take 0.1 to 0.2 s from it.

Gather writes an index beside the matrix: the sha256 of each row's audio, the cache folder the
vectors belong to (its name is the key of extractor, settings and extraction code), and the
identity of the matrix file (size, inode, device) once written. Extraction takes a row from the
matrix only when the index matches: the same cache folder, the same matrix file (every write of
it is a new file renamed into place, rbl.atomic, so a matrix and an index of two different runs,
e.g. a gather interrupted between its two writes, are never paired), the shape the index
describes; a NaN row (a skipped clip) is never taken. Anything else falls back to the cache, so
the vectors are byte for byte those the cache gives (tests/test_previous.py). Times are left out
of the identity: Snakemake may touch an output after its job, which changes no byte. Snakemake
removes both of gather's outputs before gather runs again; a matrix deleted by hand and written
anew by something other than gather could reuse the inode, so such a matrix needs its own index.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from rbl.atomic import atomic_path

INDEX_FORMAT = 1


def identity(path: str | os.PathLike) -> str:
    """Which file is at `path`: size, inode and device (a rename onto it gives another inode)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_ino}:{st.st_dev}"


def write_index(
    index_path: str | os.PathLike, matrix_path: str | os.PathLike, digests: list[str], cache_dir: str
) -> None:
    """Index the rows of the matrix just written at `matrix_path` (row i: the audio `digests[i]`)
    as vectors of the cache folder `cache_dir` ("" for vectors no cache holds: never matched)."""
    with atomic_path(index_path) as tmp:
        np.savez(
            tmp,
            format=np.array(INDEX_FORMAT),
            digests=np.array(digests, dtype="S64"),
            cache_dir=np.array(cache_dir),
            matrix=np.array(identity(matrix_path)),
        )


def take_rows(
    index_path: str | os.PathLike, matrix_path: str | os.PathLike, cache_dir: str, digests: list[str], out: np.ndarray
) -> np.ndarray:
    """Fill the rows of `out` ((len(digests), dim) float32) whose audio the previous matrix holds;
    the mask of the rows filled (none when the index does not match, or is absent or unreadable)."""
    filled = np.zeros(len(digests), dtype=bool)
    if not cache_dir:
        return filled
    try:
        with np.load(index_path, allow_pickle=False) as index:
            if int(index["format"]) != INDEX_FORMAT or str(index["cache_dir"]) != cache_dir:
                return filled
            if str(index["matrix"]) != identity(matrix_path):
                return filled
            known = index["digests"]
        matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return filled
    if matrix.dtype != np.float32 or matrix.shape != (len(known), out.shape[1]):
        return filled
    row_of = dict(zip(known.tolist(), range(len(known))))  # audio digest (ASCII bytes) -> row
    source = np.fromiter((row_of.get(d.encode(), -1) for d in digests), dtype=np.int64, count=len(digests))
    rows = np.flatnonzero(source >= 0)
    vectors = np.asarray(matrix[source[rows]])
    usable = np.isfinite(vectors).all(axis=1)
    out[rows[usable]] = vectors[usable]
    filled[rows[usable]] = True
    return filled
