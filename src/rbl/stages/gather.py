"""`rbl gather`: the extraction shards joined into one feature matrix and one record."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rbl.errors import InputError
from rbl.io import load_array, read_table, write_features, write_skipped

HELP = "join extraction shards into one feature matrix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest")
    p.add_argument("--parts", nargs="+", required=True, help="the shards' feature matrices (.npy), in order")
    p.add_argument("--infos", nargs="+", required=True, help="the shards' records (.json), in the same order")
    p.add_argument("--out", required=True, help="feature matrix to write (.npy)")
    p.add_argument("--info", required=True, help="extraction record to write (.json)")
    p.add_argument("--skipped", default="", help="write the skipped clips of all shards (file, reason) here")
    p.add_argument("--index", default="", help="write the index of --out's rows here (for the next extraction)")


def run(args: argparse.Namespace) -> None:
    from rbl.previous import write_index
    from rbl.shards import merge_infos

    if len(args.parts) != len(args.infos):
        raise InputError("gather: give one --infos file per --parts file, in the same order")
    feats = np.concatenate([load_array(p) for p in args.parts])
    manifest = read_table(args.manifest, ["file", "sha256"] if args.index else ["file"])
    n = len(manifest)
    if len(feats) != n:
        raise InputError(f"gather: the shards hold {len(feats)} clips, the manifest {n}; rerun extraction")
    infos = [json.loads(Path(p).read_text()) for p in args.infos]
    info = merge_infos(infos)
    if info["n_clips"] != n:
        raise InputError(
            f"gather: the shards' records count {info['n_clips']} clips, the manifest {n}; rerun extraction"
        )
    # On stdout, which the workflow leaves on the console (stderr goes to the rule's log): which
    # extractor ran, also when `auto` chose it; the first line of why (the record holds all of it).
    lines = str(info["reason"]).splitlines() or [""]
    why = lines[0] + (f" ... (in full: {args.info})" if len(lines) > 1 else "")
    print(
        f"features: extractor {info['extractor']}, requested {info['requested']}; {info['computed']} clip(s) "
        f"computed, {info['from_cache']} from the cache, {info['skipped']} skipped, in {len(args.parts)} "
        f"shard(s); why: {why}",
        flush=True,
    )
    if args.skipped:
        write_skipped(info["skipped_clips"], args.skipped, info, keep_list=False)
    write_features(feats, info, args.out, args.info)
    if args.index:
        # The vectors of one cache folder (precomputed ones have none: an index that never matches).
        folders = {i.get("cache_dir", "") for i in infos}
        write_index(args.index, args.out, manifest["sha256"].tolist(), folders.pop() if len(folders) == 1 else "")
