"""Clip-level features from audio: decoding in parallel threads, batched extraction, a per-clip cache.

Extractors: `vggish` (the published VGGish CNN + PCA, mean-pooled over the clip's 0.96 s
examples) and `logmel` (the same log-mel frontend, mean and std per band: weightless). `auto`
takes VGGish when its weights are present or can be downloaded, else logmel, and says so.

The cache is content-addressed: one .npy per clip under cache_dir/<settings key>/, named by the
audio's sha256, where the settings key hashes everything that changes the features. A rerun after
a data change computes only the clips it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rbl import audio
from rbl.atomic import atomic_path
from rbl.data import file_sha256
from rbl.errors import InputError

log = logging.getLogger(__name__)

EXTRACTORS = ("auto", "vggish", "logmel")
# Bump when the feature computation changes, so cached clips are recomputed.
FEATURE_VERSION = 1
DIM = 128


@dataclass(frozen=True)
class ExtractSettings:
    extractor: str = "auto"
    weights_dir: str = "resources/vggish"
    download: bool = True
    final_relu: bool = True
    verify: bool = True
    batch_clips: int = 32
    workers: int = 2
    device: str = "cpu"


class Cache:
    """Per-clip feature vectors on disk, written atomically and checked on read."""

    def __init__(self, root: Path, settings: dict) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / key
        self.settings = settings

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            vec = np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            return None
        return vec if vec.shape == (DIM,) and np.isfinite(vec).all() else None

    def put(self, digest: str, vec: np.ndarray) -> None:
        with atomic_path(self.path(digest)) as tmp:
            np.save(tmp, vec.astype(np.float32))

    def describe(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.dir / "settings.json"
        if not settings_file.exists():
            with atomic_path(settings_file) as tmp:
                tmp.write_text(json.dumps(self.settings, indent=2, sort_keys=True))


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


def load_precomputed(paths: list[str]) -> np.ndarray:
    """(N, D) matrix of one precomputed vector per clip; every file must hold the same finite shape."""
    rows = []
    for path in paths:
        try:
            vec = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: not a readable .npy array ({err})") from None
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if rows and vec.shape != rows[0].shape:
            raise InputError(f"{path}: {vec.size} values where {paths[0]} has {rows[0].size}; "
                             "every clip needs a vector of the same size")
        if not np.isfinite(vec).all():
            raise InputError(f"{path}: holds NaN or Inf; recompute or remove this clip")
        rows.append(vec)
    return np.stack(rows)


def shard_rows(n: int, shard: int, shards: int) -> np.ndarray:
    """Row indices of one of `shards` contiguous, near-equal parts of n rows."""
    if not 0 <= shard < shards:
        raise InputError(f"shard {shard} is not in 0..{shards - 1}")
    return np.array_split(np.arange(n), shards)[shard]


def merge_infos(infos: list[dict]) -> dict:
    """One record for the shards of an extraction: counts summed, the rest from the first shard."""
    extractors = {i["extractor"] for i in infos}
    if len(extractors) != 1:
        raise InputError(f"shards were extracted with different extractors {sorted(extractors)}; rerun them")
    merged = {k: v for k, v in infos[0].items() if k != "shard"}
    for key in ("n_clips", "computed", "from_cache"):
        merged[key] = sum(i[key] for i in infos)
    merged["shards"] = len(infos)
    return merged


def _batched(items: list, size: int):
    for k in range(0, len(items), size):
        yield items[k:k + size]


def extract(paths: list[str], digests: list[str], settings: ExtractSettings, cache_root: Path,
            progress: bool = True) -> tuple[np.ndarray, dict]:
    """(N, 128) features of the files, in order, and a record of what was done."""
    name, reason = choose_extractor(settings)
    banner = f"FEATURE EXTRACTOR: {name} ({reason})"
    log.warning(banner) if name != settings.extractor else log.info(banner)
    device = torch.device(settings.device)
    cache_settings = {"extractor": name, "version": FEATURE_VERSION}
    if name == "vggish":
        from rbl.vggish.weights import find_or_fetch, load_extractor

        cnn_path, pca_path = find_or_fetch(Path(settings.weights_dir), settings.download, settings.verify)
        cache_settings.update(final_relu=settings.final_relu,
                              weights=[file_sha256(cnn_path), file_sha256(pca_path)])
        model = load_extractor(Path(settings.weights_dir), settings.download, settings.final_relu, device,
                               verify=settings.verify)
    cache = Cache(cache_root, cache_settings)
    cache.describe()
    out = np.zeros((len(paths), DIM), dtype=np.float32)
    todo = []
    for i, digest in enumerate(digests):
        vec = cache.get(digest)
        if vec is None:
            todo.append(i)
        else:
            out[i] = vec
    # Identical audio under two names is computed once.
    unique: dict[str, int] = {}
    for i in todo:
        unique.setdefault(digests[i], i)
    work = list(unique.values())
    bar = tqdm(total=len(work), desc=f"extracting ({name})", unit="clip", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
        for chunk in _batched(work, max(1, settings.batch_clips)):
            waves = [torch.from_numpy(w).to(device) for w in pool.map(lambda i: audio.load(paths[i]), chunk)]
            with torch.inference_mode():
                if name == "vggish":
                    from rbl.vggish.frontend import clip_examples

                    examples, clip_index = clip_examples(waves)
                    feats = model.pool(model(examples), clip_index, len(waves))
                else:
                    from rbl.vggish.frontend import clip_logmel_stats

                    feats = clip_logmel_stats(waves)
            for i, vec in zip(chunk, feats.float().cpu().numpy()):
                cache.put(digests[i], vec)
            bar.update(len(chunk))
    bar.close()
    for i in todo:
        out[i] = cache.get(digests[i])
    info = {"extractor": name, "requested": settings.extractor, "reason": reason,
            "n_clips": len(paths), "computed": len(work), "from_cache": len(paths) - len(todo),
            "cache_dir": str(cache.dir), "settings": asdict(settings)}
    log.info("features: %d clip(s) computed, %d from the cache", len(work), info["from_cache"])
    return out, info
