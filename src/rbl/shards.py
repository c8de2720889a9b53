"""Extraction in shards: which manifest rows a shard takes, and one record from the shards' records.

Kept apart from rbl.features so that gathering the shards needs neither torch nor the extractors
(importing torch was a quarter of a rerun's time at 100,000 clips).
"""

from __future__ import annotations

import numpy as np

from rbl.errors import InputError


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
    merged = {k: v for k, v in infos[0].items() if k not in ("shard", "skipped_clips")}
    for key in ("n_clips", "computed", "from_cache", "from_previous", "skipped"):
        merged[key] = sum(i.get(key, 0) for i in infos)
    merged["skipped_clips"] = [clip for i in infos for clip in i.get("skipped_clips", [])]
    merged["shards"] = len(infos)
    return merged
