"""Clip-level features from audio: decoding in parallel threads, batched extraction, a per-clip cache.

Extractors: `vggish` (the published VGGish CNN + PCA, mean-pooled over the clip's 0.96 s
examples) and `logmel` (the same log-mel frontend, mean and std per band: weightless). `auto`
takes VGGish when its weights are present or can be downloaded, else logmel, and says so.

The cache is content-addressed: one small binary file per clip under cache_dir/<settings key>/, named by the
audio's sha256, where the settings key hashes everything that changes the features. A rerun after
a data change (or an interrupted run) computes only the clips it has not seen. Entries are written
to a hidden temporary file and renamed, so an entry is whole or absent; each holds the audio digest
and a sha256 of the vector, checked on every read, so a damaged entry is recomputed, never used.

Clips are decoded and resampled block by block and cut into pieces that frame exactly as the whole
clip frames (`frame_pieces`); pieces are pooled into their clip with running sums (`_Pooling`).
Short clips are one piece each and go through the frontend and CNN many at a time; memory is
bounded by the pieces held, not by any clip's length (benchmarks/extract_memory.py).

A clip that cannot be decoded (or whose decoding or features run out of memory) stops extraction
with a message naming the file (`on_error="stop"`, the default), or with `on_error="skip"` is left
out: its row of the feature matrix is NaN (never a made-up vector), and it is listed with the reason
in the extraction record (`skipped`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rbl import audio
from rbl.atomic import atomic_path
from rbl.codehash import modules_hash
from rbl.errors import InputError
from rbl.feature_settings import EXTRACTORS, ON_ERROR, PRECOMPUTED, ExtractSettings
from rbl.vggish.frontend import EXAMPLE_FRAMES, N_MELS, frame_pieces, pieces_logmel
from rbl.vggish.model import CPU_CNN_BATCH

log = logging.getLogger(__name__)

# Bump when the layout of a cache entry changes.
CACHE_FORMAT = 3
ENTRY_MAGIC = b"RBL1"
ENTRY_SIZE = len(ENTRY_MAGIC) + 32 + 4 * 128 + 32  # magic, audio sha256, vector, check
DIM = 128
# A temporary file of an interrupted write older than this is removed (a write takes milliseconds;
# the margin keeps clear of concurrent extraction jobs writing into the same cache).
STALE_TMP_SECONDS = 3600
# Frames per piece of a long clip: 64 VGGish examples (61.44 s, 3.9 MB of samples), one CNN call
# (CPU_CNN_BATCH). Clips up to this long are batched whole as before; longer ones go on piece by
# piece, so memory does not grow with a clip's length.
PIECE_FRAMES = CPU_CNN_BATCH * EXAMPLE_FRAMES
# Samples of pieces in one frontend call: 8.4 M (524 s of audio, about 300 MB of frames and spectra;
# a batch of 32 clips of 10 s is 5.1 M, one call as before).
GROUP_SAMPLES = 2**23
ON_ERROR_HINT = (
    "or set the config key features.on_error: skip to leave such clips out "
    "(they are listed with the reason in results/<dataset>/skipped.csv)"
)


def _checksum(vec: np.ndarray, digest: str) -> str:
    return hashlib.sha256(digest.encode() + np.ascontiguousarray(vec, dtype="<f4").tobytes()).hexdigest()


def _entry(vec: np.ndarray, digest: str) -> bytes:
    return ENTRY_MAGIC + bytes.fromhex(digest) + vec.astype("<f4").tobytes() + bytes.fromhex(_checksum(vec, digest))


class Cache:
    """Per-clip feature vectors on disk, written atomically and verified on read.

    An entry `<sha256[:2]>/<sha256>.vec` is ENTRY_SIZE bytes: a magic, the audio digest, the vector
    (128 little-endian float32) and `check`, a sha256 of digest and vector. Raw bytes, not an .npz:
    a rerun reads every entry of the dataset, and opening an .npz cost twenty times the read
    (benchmarks/README.md, "Measurements behind the code"). A read that fails in any way (missing,
    truncated, another format, NaN, another clip's entry, checksum mismatch) returns None: the
    clip is recomputed.
    Temporary files of interrupted writes start with '.', so no reader takes them for entries.
    """

    def __init__(self, root: Path, settings: dict) -> None:
        self.settings = {**settings, "format": CACHE_FORMAT}
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / key
        self._dir = str(self.dir)
        self.rejected = 0

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.vec"

    def get(self, digest: str) -> np.ndarray | None:
        # A string path and open(): pathlib's objects cost a third of the read (benchmarks/README.md).
        path = f"{self._dir}/{digest[:2]}/{digest}.vec"
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cache entry %s is unreadable (%s); recomputing it", path, err)
            self.rejected += 1
            return None
        vec = None
        if len(data) == ENTRY_SIZE and data.startswith(ENTRY_MAGIC) and data[4:36] == bytes.fromhex(digest):
            vec = np.frombuffer(data, dtype="<f4", count=DIM, offset=36).astype(np.float32)
            if data[-32:] != bytes.fromhex(_checksum(vec, digest)) or not np.isfinite(vec).all():
                vec = None
        if vec is None:
            log.warning("cache entry %s fails its checks; recomputing it", path)
            self.rejected += 1
        return vec

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


def choose_extractor(settings: ExtractSettings) -> tuple[str, str]:
    """The extractor to run and why (for `auto`: VGGish if its weights can be had)."""
    from rbl.vggish.weights import find_or_fetch

    if settings.extractor == "logmel":
        return "logmel", "configured"
    try:
        find_or_fetch(Path(settings.weights_dir), settings.download, settings.verify)
    except InputError as err:
        if settings.extractor == "vggish":
            raise
        return "logmel", f"VGGish weights unavailable ({err})"
    return "vggish", "configured" if settings.extractor == "vggish" else "weights found"


def _reason(err: Exception, path: str) -> str:
    """An error's message without the leading '<path>: ' (the skipped list names the file itself)."""
    text = str(err)
    return text[len(path) + 2 :] if text.startswith(f"{path}: ") else text


def _npy_bytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n:,} bytes"


def check_npy(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a clip's precomputed .npy vector, from its header alone, or InputError.

    Checked before any data is read or allocated: the file must be a .npy (not an .npz or pickle),
    hold numbers (no objects: loading those would need pickle), be one non-empty vector (D,), and
    hold the bytes its header declares (a 136-byte header claiming 1e10 values would otherwise ask
    for 37 GiB).
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                raise InputError(
                    f"{path}: a zip archive (an .npz saved under a .npy name?), not a .npy array; "
                    "save one vector per clip with numpy.save"
                )
            handle.seek(0)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
        size = os.path.getsize(path)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable .npy array ({err})") from None
    if dtype.hasobject:
        raise InputError(
            f"{path}: not a readable .npy array (it holds Python objects, which need allow_pickle "
            "to load and can run code: never done here); save numbers with numpy.save"
        )
    if dtype.kind not in "fiu":
        raise InputError(f"{path}: holds {dtype} values, not real numbers; recompute this clip")
    if len(shape) != 1:
        raise InputError(
            f"{path}: holds an array of shape {shape}, where each clip needs one feature vector of "
            "shape (D,); pool frame-level features over the clip (or save vec.reshape(-1) if it "
            "is one vector)"
        )
    if shape[0] == 0:
        raise InputError(f"{path}: holds an empty vector (shape (0,)); recompute this clip's features or remove it")
    declared, held = shape[0] * dtype.itemsize, size - offset
    if held < declared:
        raise InputError(
            f"{path}: the header declares {shape[0]:,} {dtype} values ({_npy_bytes(declared)}) but "
            f"the file holds {_npy_bytes(max(held, 0))} of data: truncated or damaged; recompute it"
        )
    return shape, dtype


def load_precomputed(paths: list[str], on_error: str = "stop", skipped: dict[int, str] | None = None) -> np.ndarray:
    """(N, D) matrix of one precomputed vector per clip; every file must hold the same finite shape.

    Each file's header is checked first (`check_npy`). With on_error="skip", a file that fails the
    checks or holds NaN/Inf gets a NaN row and its index and reason go into `skipped`; vectors of a
    different size always stop (the dataset is inconsistent).
    """
    rows: list[np.ndarray | None] = []
    first = None
    for i, path in enumerate(paths):
        try:
            check_npy(path)
            try:
                vec = np.load(path, allow_pickle=False).astype(np.float32)
            except (ValueError, OSError, EOFError) as err:
                raise InputError(f"{path}: not a readable .npy array ({err})") from None
            if not np.isfinite(vec).all():
                raise InputError(f"{path}: holds NaN or Inf; recompute or remove this clip")
        except InputError as err:
            if skipped is None:
                raise
            if on_error != "skip":
                raise InputError(f"{err}; {ON_ERROR_HINT}") from None
            skipped[i] = _reason(err, path)
            log.warning("skipped %s: %s", path, skipped[i])
            rows.append(None)
            continue
        if first is not None and vec.shape != rows[first].shape:
            raise InputError(
                f"{path}: {vec.size} values where {paths[first]} has {rows[first].size}; "
                "every clip needs a vector of the same size"
            )
        first = i if first is None else first
        rows.append(vec)
    if first is None:
        raise InputError(
            f"none of the {len(paths)} feature file(s) could be read (e.g. {paths[0]}: "
            f"{skipped[0] if skipped else 'no files'}); check dataset.features_dir"
        )
    nan = np.full_like(rows[first], np.nan)
    return np.stack([nan if r is None else r for r in rows])


def precomputed_features(paths: list[str], on_error: str = "stop") -> tuple[np.ndarray, dict]:
    """The clips' own vectors (`load_precomputed`) and the record `extract` writes, with the same keys."""
    failed: dict[int, str] = {}
    feats = load_precomputed(paths, on_error, failed)
    info = {
        "extractor": PRECOMPUTED,
        "requested": PRECOMPUTED,
        "reason": "dataset.features_dir",
        "n_clips": len(feats),
        "computed": 0,
        "from_cache": 0,
        "skipped": len(failed),
        "on_error": on_error,
        "skipped_clips": [{"row": i, "path": paths[i], "reason": why} for i, why in sorted(failed.items())],
    }
    log.info("FEATURE EXTRACTOR: %s (%s)", PRECOMPUTED, info["reason"])
    return feats, info


def _batched(items: list, size: int):
    for k in range(0, len(items), size):
        yield items[k : k + size]


def _out_of_memory(err: BaseException) -> bool:
    """Whether an exception is an allocation failure (numpy's MemoryError, torch's CPU allocator)."""
    if isinstance(err, MemoryError) or isinstance(err, getattr(torch, "OutOfMemoryError", MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "not enough memory" in text or "can't allocate memory" in text or "out of memory" in text
    )


def _memory_reason(err: BaseException, doing: str) -> str:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"ran out of memory {doing} ({detail}); free memory or lower features.batch_clips, "
        "or replace the file if it is not what its header says"
    )


class _Clip:
    """One clip's pieces (`frame_pieces` over `audio.stream`), each with whether it is the last, read on demand."""

    def __init__(self, path: str, unit: int) -> None:
        self.path = path
        self.pieces = frame_pieces(audio.stream(path), PIECE_FRAMES, unit)
        self.ahead = None  # the piece read but not yet handed out (to tell the last one)

    def next(self) -> tuple[np.ndarray | None, int, bool, str]:
        """(piece, frames, last, "") or (None, 0, True, why the clip cannot be used). Runs in a worker thread."""
        try:
            if self.ahead is None:
                self.ahead = next(self.pieces)
            piece, frames = self.ahead
            self.ahead = next(self.pieces, None)
            return piece, frames, self.ahead is None, ""
        except InputError as err:
            return None, 0, True, _reason(err, self.path)
        except Exception as err:  # noqa: BLE001 - any failure while decoding is the file's (or its size's)
            if _out_of_memory(err):
                return None, 0, True, _memory_reason(err, "decoding it")
            return None, 0, True, f"cannot decode audio ({type(err).__name__}: {err})"


class _Pooling:
    """Running per-clip pooling over pieces, in float64: the mean VGGish embedding, or log-mel mean and std.

    Log-mel statistics merge per-piece (count, mean, sum of squared deviations) with Chan et al.'s
    pairwise update, which keeps the std as accurate as the two-pass whole-clip computation.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.count: dict[int, int] = {}
        self.first: dict[int, np.ndarray] = {}  # vggish: sum of embeddings; logmel: mean
        self.second: dict[int, np.ndarray] = {}  # logmel: sum of squared deviations from the mean

    def add(self, clip: int, values: np.ndarray) -> None:
        """Fold one piece's rows (its examples' embeddings, or its log-mel frames) into the clip."""
        values = values.astype(np.float64)
        n = len(values)
        if self.name == "vggish":
            self.first[clip] = self.first.get(clip, 0.0) + values.sum(axis=0)
            self.count[clip] = self.count.get(clip, 0) + n
            return
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        if clip not in self.count:
            self.count[clip], self.first[clip], self.second[clip] = n, mean, m2
            return
        had = self.count[clip]
        total = had + n
        delta = mean - self.first[clip]
        self.first[clip] = self.first[clip] + delta * (n / total)
        self.second[clip] = self.second[clip] + m2 + delta**2 * (had * n / total)
        self.count[clip] = total

    def pop(self, clip: int) -> np.ndarray:
        """The clip's feature vector (128,) float32, forgetting the clip."""
        n, first = self.count.pop(clip), self.first.pop(clip)
        if self.name == "vggish":
            return (first / n).astype(np.float32)
        return np.concatenate([first, np.sqrt(self.second.pop(clip) / n)]).astype(np.float32)

    def drop(self, clip: int) -> None:
        for table in (self.count, self.first, self.second):
            table.pop(clip, None)


def _groups(pieces: list, budget: int):
    """Consecutive runs of pieces of at most `budget` samples in all (a larger piece goes alone)."""
    group, size = [], 0
    for piece in pieces:
        if group and size + len(piece[1]) > budget:
            yield group
            group, size = [], 0
        group.append(piece)
        size += len(piece[1])
    if group:
        yield group


class _Extraction:
    """The clips left to compute after the cache lookup, computed and pooled (one `extract` call).

    Holds what the pieces share: the extractor and its model, the cache the vectors go to, the
    running pooling, and per audio digest the vectors computed and the reasons of clips refused.
    """

    def __init__(
        self, paths: list[str], digests: list[str], name: str, model, device: torch.device, cache: Cache, on_error: str
    ) -> None:
        self.paths, self.digests, self.name, self.model, self.device = paths, digests, name, model, device
        self.cache, self.on_error = cache, on_error
        self.unit = EXAMPLE_FRAMES if name == "vggish" else 1
        self.pooling = _Pooling(name)
        self.computed: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}  # digest -> reason

    def refuse(self, i: int, why: str) -> None:
        """Clip i cannot be used: stop naming it, or (on_error "skip") remember why and go on."""
        self.pooling.drop(i)
        if self.on_error == "stop":
            raise InputError(f"{self.paths[i]}: {why}; {ON_ERROR_HINT}")
        self.failed[self.digests[i]] = why
        log.warning("skipped %s: %s", self.paths[i], why)

    def rows_of(self, group: list[tuple[int, np.ndarray, int, bool]]) -> list[np.ndarray]:
        """Per piece: its examples' embeddings (vggish) or its log-mel frames (logmel), one frontend call."""
        waves = [torch.from_numpy(wave).to(self.device) for _, wave, _, _ in group]
        frames = [k for _, _, k, _ in group]
        with torch.inference_mode():
            logmel = pieces_logmel(waves, frames)
            if self.name == "vggish":
                out = self.model(logmel.view(-1, EXAMPLE_FRAMES, N_MELS))
                sizes = [k // EXAMPLE_FRAMES for k in frames]
            else:
                out, sizes = logmel, frames
            return [part.numpy() for part in torch.split(out.float().cpu(), sizes)]

    def compute(self, pieces: list[tuple[int, np.ndarray, int, bool]]) -> None:
        """Pool pieces (clip, samples, frames, last) into their clips; a clip is done with its last piece."""
        for group in _groups(pieces, GROUP_SAMPLES):
            try:
                rows = self.rows_of(group)
            except Exception as err:  # noqa: BLE001 - only allocation failures are handled, the rest re-raised
                if not _out_of_memory(err):
                    raise
                if len(group) > 1:  # find the clip that does not fit: one piece at a time
                    for piece in group:
                        self.compute([piece])
                    continue
                self.refuse(group[0][0], _memory_reason(err, "computing its features"))
                continue
            for (i, _, _, last), values in zip(group, rows):
                if self.digests[i] in self.failed:
                    continue
                self.pooling.add(i, values)
                if last:
                    self.finish(i)

    def finish(self, i: int) -> None:
        """Clip i's last piece is pooled: check its vector, cache it."""
        vec = self.pooling.pop(i)
        if not np.isfinite(vec).all():
            self.refuse(i, "its features are not finite (extreme sample values?); replace or remove it")
            return
        self.cache.put(self.digests[i], vec)
        self.computed[self.digests[i]] = vec

    def begin(self, i: int) -> tuple[_Clip, tuple]:
        """Open clip i and read its first piece (in a worker thread)."""
        clip = _Clip(self.paths[i], self.unit)
        return clip, clip.next()

    def run(self, work: list[int], batch_clips: int, workers: int, progress: bool) -> None:
        """Compute the clips `work`, a batch at a time, the next batch decoding while one computes.

        The next batch decodes in the threads while this one goes through the frontend and CNN
        (torch releases the GIL). A batch holds the first piece of each clip (all of a clip up to
        PIECE_FRAMES); a longer clip then goes on piece by piece (`rest_of`). Memory holds two
        batches of pieces (and one piece read ahead per clip, to tell its last), and one frontend
        call of GROUP_SAMPLES, whatever the clips' lengths.
        """
        bar = tqdm(total=len(work), desc=f"extracting ({self.name})", unit="clip", disable=not progress)
        chunks = list(_batched(work, max(1, batch_clips)))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:

            def decode(chunk: list[int]) -> list[Future]:
                return [pool.submit(self.begin, i) for i in chunk]

            pending = decode(chunks[0]) if chunks else []
            for n, chunk in enumerate(chunks):
                started = [future.result() for future in pending]
                pending = decode(chunks[n + 1]) if n + 1 < len(chunks) else []
                ready, longer = [], []
                for i, (clip, (piece, frames, last, why)) in zip(chunk, started):
                    if piece is None:
                        self.refuse(i, why)
                        continue
                    ready.append((i, piece, frames, last))
                    if not last:
                        longer.append((i, clip))
                del started
                self.compute(ready)
                del ready
                for i, clip in longer:
                    self.rest_of(pool, i, clip)
                bar.update(len(chunk))
        bar.close()

    def rest_of(self, pool: ThreadPoolExecutor, i: int, clip: _Clip) -> None:
        """The pieces of a long clip after its first, its next piece decoding while one computes."""
        ahead = pool.submit(clip.next)
        while self.digests[i] not in self.failed:
            piece, frames, last, why = ahead.result()
            if piece is None:
                self.refuse(i, why)
                return
            if not last:
                ahead = pool.submit(clip.next)
            self.compute([(i, piece, frames, last)])
            if last:
                return


def _open_cache(name: str, settings: ExtractSettings, device: torch.device, cache_root: Path) -> tuple[Cache, object]:
    """The cache for this extractor and its settings, and the VGGish model (None for logmel).

    Entries are keyed by the source of everything extraction runs (this module's import closure),
    so an edit to the decoding, frontend, network or pooling code never reuses old vectors.
    """
    cache_settings = {"extractor": name, "code": modules_hash([__name__])}
    model = None
    if name == "vggish":
        from rbl.vggish.weights import file_digest, find_or_fetch, load_extractor

        cnn_path, pca_path = find_or_fetch(Path(settings.weights_dir), settings.download, settings.verify)
        cache_settings.update(final_relu=settings.final_relu, weights=[file_digest(cnn_path), file_digest(pca_path)])
        if settings.precision != "float32":  # (absent for float32: caches from before the option stay valid)
            cache_settings["precision"] = settings.precision
        model = load_extractor(
            Path(settings.weights_dir),
            settings.download,
            settings.final_relu,
            device,
            verify=settings.verify,
            precision=settings.precision,
        )
    cache = Cache(cache_root, cache_settings)
    cache.describe()
    cache.remove_stale_temporaries()
    return cache, model


def _from_cache(cache: Cache, digests: list[str], out: np.ndarray) -> list[int]:
    """Fill `out` with the cached vectors; the rows not in the cache."""
    todo = []
    for i, digest in enumerate(digests):
        vec = cache.get(digest)
        if vec is None:
            todo.append(i)
        else:
            out[i] = vec
    return todo


def extract(
    paths: list[str], digests: list[str], settings: ExtractSettings, cache_root: Path, progress: bool = True
) -> tuple[np.ndarray, dict]:
    """(N, 128) features of the files, in order, and a record of what was done.

    A clip that cannot be decoded raises InputError (on_error "stop") or is skipped (on_error
    "skip"): its row is NaN and `info["skipped_clips"]` lists {"row", "path", "reason"}.
    """
    if settings.on_error not in ON_ERROR:
        raise InputError(f"features.on_error: '{settings.on_error}' is not one of {', '.join(ON_ERROR)}")
    if settings.extractor not in EXTRACTORS:
        raise InputError(f"features.extractor: '{settings.extractor}' is not one of {', '.join(EXTRACTORS)}")
    name, reason = choose_extractor(settings)
    banner = f"FEATURE EXTRACTOR: {name} ({reason})"
    log.warning(banner) if name != settings.extractor else log.info(banner)
    device = torch.device(settings.device)
    cache, model = _open_cache(name, settings, device, cache_root)
    out = np.zeros((len(paths), DIM), dtype=np.float32)
    todo = _from_cache(cache, digests, out)
    # Identical audio under two names is computed once.
    unique: dict[str, int] = {}
    for i in todo:
        unique.setdefault(digests[i], i)
    work = list(unique.values())
    job = _Extraction(paths, digests, name, model, device, cache, settings.on_error)
    job.run(work, settings.batch_clips, settings.workers, progress)
    skipped_clips = []
    for i in todo:
        if digests[i] in job.failed:
            out[i] = np.nan  # never a made-up vector: any use of this row shows up as NaN
            skipped_clips.append({"row": i, "path": paths[i], "reason": job.failed[digests[i]]})
        else:
            out[i] = job.computed[digests[i]]
    info = {
        "extractor": name,
        "requested": settings.extractor,
        "reason": reason,
        "n_clips": len(paths),
        "computed": len(work) - len(job.failed),
        "from_cache": len(paths) - len(todo),
        "skipped": len(skipped_clips),
        "on_error": settings.on_error,
        "skipped_clips": skipped_clips,
        "cache_rejected": cache.rejected,
        "cache_dir": str(cache.dir),
        "settings": asdict(settings),
    }
    log.info(
        "features: %d clip(s) computed, %d from the cache, %d skipped",
        info["computed"],
        info["from_cache"],
        len(skipped_clips),
    )
    return out, info
