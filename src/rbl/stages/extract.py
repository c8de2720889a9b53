"""`rbl extract`: clip features of one shard of the manifest (VGGish, log-mel or precomputed vectors)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbl.errors import InputError
from rbl.feature_settings import PRECOMPUTED, ExtractSettings
from rbl.io import read_table, write_features, write_skipped
from rbl.stages.options import add_settings, settings_from

HELP = "clip features (VGGish or log-mel), with the per-clip cache"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    add_settings(p, ExtractSettings)
    p.add_argument("--cache-dir", default="", help="folder of the per-clip feature cache (not used by precomputed)")
    p.add_argument("--out", required=True, help="feature matrix to write (.npy, one row per clip of the shard)")
    p.add_argument("--info", required=True, help="extraction record to write (.json): extractor that ran, counts")
    p.add_argument("--shard", type=int, default=0, help="this job's shard, counted from 0")
    p.add_argument("--shards", type=int, default=1, help="number of shards the manifest is cut into")
    p.add_argument("--skipped", default="", help="also write the skipped clips (file, reason) to this CSV")
    p.add_argument("--previous", default="", help="the last gather's feature matrix, looked up before the cache")
    p.add_argument("--previous-index", default="", help="the index gather wrote beside --previous")


def run(args: argparse.Namespace) -> None:
    # No torch here: rbl.extraction imports it (rbl.features) only for clips the cache lacks.
    from rbl.extraction import extract, precomputed_features
    from rbl.shards import shard_rows

    settings = settings_from(args, ExtractSettings)
    manifest = read_table(args.manifest, ["file", "path", "sha256"])
    rows = shard_rows(len(manifest), args.shard, args.shards)
    paths, digests = list(manifest["path"].iloc[rows]), list(manifest["sha256"].iloc[rows])
    if settings.extractor == PRECOMPUTED:
        feats, info = precomputed_features(paths, settings.on_error)
    else:
        if not args.cache_dir:
            raise InputError("extract: --cache-dir is needed to compute features (features.cache_dir)")
        if bool(args.previous) != bool(args.previous_index):
            raise InputError("extract: give --previous and --previous-index together")
        previous = (Path(args.previous), Path(args.previous_index)) if args.previous else None
        # The first shard sweeps the cache for temporaries of interrupted writes (one listing of
        # the whole cache per extraction, not one per shard).
        feats, info = extract(
            paths,
            digests,
            settings,
            Path(args.cache_dir),
            progress=not args.quiet,
            sweep=args.shard == 0,
            previous=previous,
        )
    # Name skipped clips as the manifest does (its 'file'), for skipped.csv and the split stage.
    files = list(manifest["file"].iloc[rows])
    info["skipped_clips"] = [{"file": files[c["row"]], "reason": c["reason"]} for c in info["skipped_clips"]]
    info["shard"] = f"{args.shard + 1} of {args.shards}"
    if args.skipped:
        write_skipped(info["skipped_clips"], args.skipped, info, keep_list=True)
    write_features(feats, info, args.out, args.info)
