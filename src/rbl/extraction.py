"""Extraction of one shard: the extractor, the cached clips, the rest computed; or precomputed vectors.

Needs no torch itself. The clips whose vectors the cache holds (rbl.cache) are served with numpy
alone; rbl.features, which decodes and computes, is imported only when some clip of the shard is
missing from the cache, and imports torch only for VGGish (`logmel` is numpy: rbl.logmel).
Importing torch took about 2 s of every extract job, also of a shard whose clips were all cached
(benchmarks/README.md, "Workflow at scale"). Precomputed vectors (`dataset.features_dir`) are read
here too: they need neither torch nor the cache.

A clip that cannot be decoded (or whose decoding or features run out of memory) stops extraction
with a message naming the file (`on_error="stop"`, the default), or with `on_error="skip"` is left
out: its row of the feature matrix is NaN (never a made-up vector), and it is listed with the reason
in the extraction record (`skipped`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from rbl.cache import open_cache
from rbl.errors import ON_ERROR_HINT, InputError, reason
from rbl.feature_settings import EXTRACTORS, ON_ERROR, PRECOMPUTED, ExtractSettings
from rbl.previous import take_rows

log = logging.getLogger(__name__)


def choose_extractor(settings: ExtractSettings) -> tuple[str, str]:
    """The extractor to run and why (for `auto`: VGGish if its weights can be had)."""
    if settings.extractor == "logmel":
        return "logmel", "configured"
    from rbl.weight_files import find_or_fetch  # (no torch, unlike rbl.vggish; not needed for logmel)

    try:
        find_or_fetch(Path(settings.weights_dir), settings.download, settings.verify)
    except InputError as err:
        if settings.extractor == "vggish":
            raise
        return "logmel", f"VGGish weights unavailable ({err})"
    return "vggish", "configured" if settings.extractor == "vggish" else "weights found"


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
            skipped[i] = reason(err, path)
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


def extract(
    paths: list[str],
    digests: list[str],
    settings: ExtractSettings,
    cache_root: Path,
    progress: bool = True,
    sweep: bool = True,
    previous: tuple[Path, Path] | None = None,
) -> tuple[np.ndarray, dict]:
    """(N, D) features of the files, in order (D: the extractor's `DIMS`), and a record of what was done.

    Clips in the cache are read from it; the others are computed by rbl.features: VGGish with
    torch (imported only then) on `settings.device` ("auto" resolved then), logmel with numpy on
    the CPU. The record's settings say the device that computed, or the configured one when
    nothing was computed. `sweep`: also remove the temporaries of interrupted cache writes
    (rbl.cache.Cache.remove_stale_temporaries). `previous`: the feature matrix and index the last
    gather wrote (rbl.previous), looked up before the cache.

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
    cache = open_cache(name, settings, cache_root, sweep)
    out = np.zeros((len(paths), cache.dim), dtype=np.float32)
    reused = np.zeros(len(paths), dtype=bool)
    if previous is not None:
        matrix, index = previous
        reused = take_rows(index, matrix, str(cache.dir), digests, out)
    rest = np.flatnonzero(~reused)
    todo: list[int] = []
    if rest.size:
        block = out[rest]
        todo = [int(rest[j]) for j in cache.read([digests[i] for i in rest], block)]
        out[rest] = block
    # Identical audio under two names is computed once.
    unique: dict[str, int] = {}
    for i in todo:
        unique.setdefault(digests[i], i)
    work = list(unique.values())
    computed: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    if work:  # only now decoding (and for VGGish torch): a shard served wholly from the cache needs neither
        from rbl.features import compute

        if name == "vggish":
            from rbl.device import resolve_device

            device = str(resolve_device(settings.device))
        else:
            device = "cpu"  # rbl.logmel: numpy, whatever features.device says
        settings = dataclasses.replace(settings, device=device)
        computed, failed = compute(paths, digests, work, name, settings, cache, progress)
    skipped_clips = []
    for i in todo:
        if digests[i] in failed:
            out[i] = np.nan  # never a made-up vector: any use of this row shows up as NaN
            skipped_clips.append({"row": i, "path": paths[i], "reason": failed[digests[i]]})
        else:
            out[i] = computed[digests[i]]
    info = {
        "extractor": name,
        "requested": settings.extractor,
        "reason": reason,
        "n_clips": len(paths),
        "computed": len(work) - len(failed),
        "from_cache": len(paths) - len(todo),
        "from_previous": int(reused.sum()),
        "skipped": len(skipped_clips),
        "on_error": settings.on_error,
        "skipped_clips": skipped_clips,
        "cache_rejected": cache.rejected,
        "cache_dir": str(cache.dir),
        "settings": dataclasses.asdict(settings),
    }
    log.info(
        "features: %d clip(s) computed, %d from the cache (%d of them from the previous matrix), %d skipped",
        info["computed"],
        info["from_cache"],
        info["from_previous"],
        len(skipped_clips),
    )
    return out, info
