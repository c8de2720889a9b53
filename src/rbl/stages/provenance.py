"""`rbl provenance`: config, versions, dataset hash, extractor and device of a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rbl.atomic import write_text
from rbl.io import read_table

HELP = "config, versions, dataset hash, extractor and device of a run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the run's config as JSON")
    p.add_argument("--manifest", required=True, help="manifest CSV of ingest (the dataset's content hashes)")
    p.add_argument("--features-info", required=True, help="extraction record (.json): the extractor that ran")
    p.add_argument("--out-json", required=True, help="provenance JSON to write")
    p.add_argument("--out-md", required=True, help="provenance markdown to write")


def run(args: argparse.Namespace) -> None:
    from rbl.provenance import provenance, to_markdown

    manifest = read_table(args.manifest)
    info = json.loads(Path(args.features_info).read_text())
    config = json.loads(args.config)
    record = provenance(config, manifest, info)
    write_text(args.out_json, json.dumps(record, indent=2))
    write_text(args.out_md, to_markdown(record))
