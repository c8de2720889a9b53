"""The per-clip feature cache: its entries, its key, and reading a shard's entries. No torch.

The cache is content-addressed: one small binary file per clip under cache_dir/<key>/, named by the
audio's sha256, where the key hashes everything that changes the features: the extractor, its
settings, the VGGish weights' digests and the source of the code that computes a vector (the import
closure of rbl.features, rbl.codehash). A rerun after a data change (or an interrupted run)
computes only the clips it has not seen. Entries are written to a hidden temporary file and
renamed, so an entry is whole or absent; each holds the audio digest and a sha256 of the vector,
checked on every read, so a damaged entry is recomputed, never used.

Kept apart from rbl.features (decoding, the frontend, the network: torch) so that an extraction
whose clips are all cached is served with numpy alone: importing torch was about 2 s of each
extract job of a one-clip rerun at 100,000 clips (benchmarks/README.md, "Workflow at scale").
The key still covers this module: rbl.features imports it, so it is part of that closure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from rbl.atomic import atomic_path
from rbl.codehash import modules_hash
from rbl.logmel import N_CEPSTRA, N_MELS

log = logging.getLogger(__name__)

# Bump when the layout of a cache entry changes.
CACHE_FORMAT = 3
ENTRY_MAGIC = b"RBL1"
# Values per clip of each extractor; a cache entry holds one such vector. vggish: the embedding.
# logmel: for each of the 64 log-mel bands and 20 cepstral coefficients, mean and std of the
# frames, mean |d| and std of d, their frame-to-frame differences (rbl.features._Pooling;
# tests/test_cache.py checks the width against its output).
DIMS = {"vggish": 128, "logmel": 4 * (N_MELS + N_CEPSTRA)}
DIM = DIMS["vggish"]
_VECTOR_AT = len(ENTRY_MAGIC) + 32


def entry_size(dim: int) -> int:
    """Bytes of an entry holding a `dim` vector: magic, audio sha256, vector, check."""
    return _VECTOR_AT + 4 * dim + 32


ENTRY_SIZE = entry_size(DIM)
# The module whose import closure computes a clip's vector: its source is part of the key.
FEATURE_CODE = "rbl.features"
# A temporary file of an interrupted write older than this is removed (a write takes milliseconds;
# the margin keeps clear of concurrent extraction jobs writing into the same cache).
STALE_TMP_SECONDS = 3600
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = _READ_FLAGS | getattr(os, "O_DIRECTORY", 0)


def _checksum(vec: np.ndarray, digest: str) -> str:
    return hashlib.sha256(digest.encode() + np.ascontiguousarray(vec, dtype="<f4").tobytes()).hexdigest()


def _entry(vec: np.ndarray, digest: str) -> bytes:
    return ENTRY_MAGIC + bytes.fromhex(digest) + vec.astype("<f4").tobytes() + bytes.fromhex(_checksum(vec, digest))


def _read(name: str, size: int, folder: int | None = None) -> bytes | None:
    """The bytes of an entry file (at most one more than `size`, an entry's), or None if absent.

    os.open/os.read rather than open(): no file object, no buffer, three system calls; a rerun
    reads every entry of the dataset (benchmarks/README.md, "Measurements behind the code").
    `folder`: an open descriptor of the entry's folder, `name` relative to it.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, size + 1)
    finally:
        os.close(fd)


class Cache:
    """Per-clip feature vectors on disk, written atomically and verified on read.

    An entry `<sha256[:2]>/<sha256>.vec` is `entry_size(dim)` bytes: a magic, the audio digest, the
    vector (`dim` little-endian float32: DIMS of the extractor) and `check`, a sha256 of digest and
    vector. Raw bytes, not an .npz:
    a rerun reads every entry of the dataset, and opening an .npz cost twenty times the read
    (benchmarks/README.md, "Measurements behind the code"). A read that fails in any way (missing,
    truncated, another format, NaN, another clip's entry, checksum mismatch) gives no vector: the
    clip is recomputed.
    Temporary files of interrupted writes start with '.', so no reader takes them for entries.
    """

    def __init__(self, root: Path, settings: dict, dim: int = DIM) -> None:
        self.dim, self.entry_size = dim, entry_size(dim)
        self.settings = {**settings, "format": CACHE_FORMAT}
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / key
        self._dir = str(self.dir)
        self.rejected = 0

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.vec"

    def _file(self, digest: str) -> str:
        # A string path: pathlib's objects cost a third of the read (benchmarks/README.md).
        return f"{self._dir}/{digest[:2]}/{digest}.vec"

    def _unreadable(self, path: str, err: OSError) -> None:
        log.warning("cache entry %s is unreadable (%s); recomputing it", path, err)
        self.rejected += 1

    def _failed(self, path: str) -> None:
        log.warning("cache entry %s fails its checks; recomputing it", path)
        self.rejected += 1

    def get(self, digest: str) -> np.ndarray | None:
        """One clip's vector (dim,) float32, or None when it must be computed."""
        out = np.empty((1, self.dim), dtype=np.float32)
        return None if self.read([digest], out) else out[0]

    def read(self, digests: list[str], out: np.ndarray) -> list[int]:
        """Fill the rows of `out` ((len(digests), dim) float32) from the cache; the rows it cannot fill.

        The checks of `get`, done for all entries at once: the files are read one by one, then the
        magic, the digest and finiteness are checked on the stacked bytes, and each checksum by one
        sha256 call. A row that fails any check is left as it was and returned.
        """
        todo, found, blobs = [], [], []
        size, check_at = self.entry_size, self.entry_size - 32
        # Entries are opened relative to their folder (one path component for the kernel to look
        # up, not the whole path), where the platform allows.
        folders: dict[str, int | None] = {}
        relative = os.open in os.supports_dir_fd
        try:
            for i, digest in enumerate(digests):
                folder = None
                if relative:
                    sub = digest[:2]
                    folder = folders.get(sub, -1)
                    if folder == -1:
                        try:
                            folder = folders[sub] = os.open(f"{self._dir}/{sub}", _FOLDER_FLAGS)
                        except OSError:  # absent (entries missing), or else read by their whole path
                            folder = folders[sub] = None
                try:
                    data = (
                        _read(f"{digest}.vec", size, folder) if folder is not None else _read(self._file(digest), size)
                    )
                except OSError as err:
                    self._unreadable(self._file(digest), err)
                    todo.append(i)
                    continue
                if data is None:
                    todo.append(i)
                elif len(data) != size:
                    self._failed(self._file(digest))
                    todo.append(i)
                else:
                    found.append(i)
                    blobs.append(data)
        finally:
            for fd in folders.values():
                if fd is not None:
                    os.close(fd)
        if not found:
            return todo
        raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(found), size)
        vectors = raw[:, _VECTOR_AT:check_at].copy().view("<f4")
        expected = np.frombuffer(b"".join(bytes.fromhex(digests[i]) for i in found), dtype=np.uint8)
        good = (
            (raw[:, : len(ENTRY_MAGIC)] == np.frombuffer(ENTRY_MAGIC, dtype=np.uint8)).all(axis=1)
            & (raw[:, len(ENTRY_MAGIC) : _VECTOR_AT] == expected.reshape(len(found), 32)).all(axis=1)
            & np.isfinite(vectors).all(axis=1)
        )
        sha256 = hashlib.sha256
        for k, i in enumerate(found):
            if good[k]:
                data = blobs[k]
                good[k] = sha256(digests[i].encode() + data[_VECTOR_AT:check_at]).digest() == data[check_at:]
        ok = np.flatnonzero(good)
        rows = np.asarray(found)
        out[rows[ok]] = vectors[ok]
        for k in np.flatnonzero(~good):
            self._failed(self._file(digests[found[k]]))
        return sorted(todo + rows[~good].tolist())

    def put(self, digest: str, vec: np.ndarray) -> None:
        vec = np.ascontiguousarray(vec, dtype=np.float32)
        with atomic_path(self.path(digest)) as tmp:
            tmp.write_bytes(_entry(vec, digest))

    def describe(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.dir / "settings.json"
        if not settings_file.exists():
            with atomic_path(settings_file) as tmp:
                tmp.write_text(json.dumps(self.settings, indent=2, sort_keys=True))

    def remove_stale_temporaries(self, older_than: float = STALE_TMP_SECONDS) -> int:
        """Delete temporary files left by interrupted writes (hidden '.*.tmp*' files), if old enough."""
        removed, now = 0, time.time()
        for dirpath, _, names in os.walk(self.dir):
            for name in names:
                if name.startswith(".") and ".tmp" in name:
                    path = Path(dirpath, name)
                    try:
                        if now - path.stat().st_mtime > older_than:
                            path.unlink()
                            removed += 1
                    except OSError:
                        pass  # another job removed or renamed it
        if removed:
            log.info("removed %d temporary file(s) of interrupted cache writes", removed)
        return removed


def key_settings(name: str, settings) -> dict:
    """What the cache of extractor `name` is keyed by, besides the entry format.

    The source of everything extraction runs (the import closure of rbl.features: decoding,
    resampling, frontend, network, pooling, this module), so an edit to any of it never reuses old
    vectors; for VGGish also the weights' digests and the settings that change its output. Needs
    no torch: VGGish's weights are found (and fetched) by rbl.weight_files.
    """
    key = {"extractor": name, "code": modules_hash([FEATURE_CODE])}
    if name == "vggish":
        from rbl.weight_files import file_digest, find_or_fetch  # (no torch; not needed for logmel)

        cnn_path, pca_path = find_or_fetch(Path(settings.weights_dir), settings.download, settings.verify)
        key.update(final_relu=settings.final_relu, weights=[file_digest(cnn_path), file_digest(pca_path)])
        if settings.precision != "float32":  # (absent for float32: caches from before the option stay valid)
            key["precision"] = settings.precision
    return key


def open_cache(name: str, settings, cache_root: Path, sweep: bool = True) -> Cache:
    """The cache of this extractor and settings under cache_root, described, and with `sweep`
    cleaned of old temporaries (one shard of an extraction does it: it lists the whole cache)."""
    cache = Cache(cache_root, key_settings(name, settings), DIMS[name])
    cache.describe()
    if sweep:
        cache.remove_stale_temporaries()
    return cache
