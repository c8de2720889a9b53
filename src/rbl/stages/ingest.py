"""`rbl ingest`: validate the taxonomy and annotations, hash the clips, write the manifest."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rbl.errors import InputError
from rbl.io import read_table, write_csv

log = logging.getLogger("rbl")

HELP = "validate taxonomy and annotations, hash audio, write the manifest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--taxonomy", required=True, help="taxonomy CSV: one column per level, coarsest first")
    p.add_argument("--annotations", required=True, help="annotations CSV: file and its labels (and split)")
    p.add_argument("--audio-root", default="", help="folder of the audio files")
    p.add_argument("--features-dir", default="", help="or: folder of one precomputed .npy per clip")
    p.add_argument("--out-manifest", required=True, help="manifest CSV to write (file, path, sha256, labels)")
    p.add_argument("--out-taxonomy", required=True, help="the validated taxonomy CSV to write")
    p.add_argument(
        "--hashes", default="", help="table of content hashes by stat signature: only new or changed files are hashed"
    )


def run(args: argparse.Namespace) -> None:
    from rbl.data import AUDIO_SUFFIXES, build_manifest, load_taxonomy, unlisted_files
    from rbl.fingerprint import cached_hashes, content_hashes

    taxonomy = load_taxonomy(args.taxonomy)
    if bool(args.audio_root) == bool(args.features_dir):
        raise InputError("give exactly one of --audio-root (audio) and --features-dir (precomputed features)")
    root = Path(args.audio_root or args.features_dir)
    if not root.is_dir():
        key = "audio_root" if args.audio_root else "features_dir"
        raise InputError(f"{root}: not a folder; set dataset.{key} in the config")
    suffix = None if args.audio_root else ".npy"
    stats: list = []  # each clip's os.stat, taken while checking it is there: the hashes' signatures
    manifest = build_manifest(read_table(args.annotations), taxonomy, root, args.annotations, suffix, stats)
    paths = list(manifest["path"])
    try:
        digests = (
            cached_hashes(paths, args.hashes, progress=not args.quiet, stats=stats)
            if args.hashes
            else content_hashes(paths, {}, progress=not args.quiet, stats=stats)[0]
        )
    except OSError as err:  # an unreadable clip: name it with its annotation line
        line = f" line {paths.index(err.filename) + 2}" if err.filename in paths else ""
        raise InputError(
            f"{args.annotations}{line}: {err.filename} cannot be read ({err.strerror or err}); "
            "check the file and its permissions"
        ) from None
    manifest.insert(2, "sha256", digests)
    start = len(str(root).rstrip("/")) + 1  # manifest paths are root/<relative path>
    listed = {p[start:] for p in manifest["path"]}
    unlisted = unlisted_files(root, listed, AUDIO_SUFFIXES if suffix is None else {suffix})
    if unlisted:
        log.warning(
            "%d file(s) under %s are not in %s and are not used, e.g. %s",
            len(unlisted),
            root,
            args.annotations,
            ", ".join(unlisted[:3]),
        )
    incomplete = int((manifest[taxonomy.levels[-1]] == "").sum())
    log.info(
        "manifest: %d clips, %d with incomplete labels, %d levels (%s)",
        len(manifest),
        incomplete,
        taxonomy.depth,
        ", ".join(taxonomy.levels),
    )
    write_csv(taxonomy.to_frame(), args.out_taxonomy)
    write_csv(manifest, args.out_manifest)
