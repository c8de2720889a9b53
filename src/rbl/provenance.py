"""What produced a set of results: config, package versions, dataset hash, extractor, device, seeds."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata

import pandas as pd
import torch
import yaml

PACKAGES = ("rbl", "torch", "numpy", "pandas", "scipy", "scikit-learn", "soundfile", "soxr", "snakemake")


def dataset_hash(manifest: pd.DataFrame) -> str:
    """sha256 over every clip's file name, content hash, label and group: changes with any of them."""
    digest = hashlib.sha256()
    for row in manifest[["file", "sha256", "label", "group"]].itertuples(index=False):
        digest.update("\t".join(row).encode() + b"\n")
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(config: dict, manifest: pd.DataFrame, features_info: dict) -> dict:
    cuda = torch.cuda.is_available()
    return {
        "dataset": {"name": config["dataset"]["name"], "clips": len(manifest), "sha256": dataset_hash(manifest)},
        "extractor": {k: features_info.get(k) for k in ("extractor", "requested", "reason")},
        "device": {
            "train": config["train"]["device"],
            "features": config["features"]["device"],
            "cuda_available": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
        },
        "seeds": config["seeds"],
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        "config": config,
    }


def to_markdown(record: dict) -> str:
    lines = [
        "# Provenance",
        "",
        f"- dataset: **{record['dataset']['name']}**, {record['dataset']['clips']} clips, "
        f"sha256 `{record['dataset']['sha256']}`",
        f"- features: **{record['extractor']['extractor']}** (requested {record['extractor']['requested']}: "
        f"{record['extractor']['reason']})",
        f"- device: train `{record['device']['train']}`, features `{record['device']['features']}`, "
        f"CUDA available: {record['device']['cuda_available']}"
        + (f" ({record['device']['gpu']})" if record["device"]["gpu"] else ""),
        f"- seeds: {record['seeds']}",
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in record["versions"].items()]
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(record["config"], sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)
