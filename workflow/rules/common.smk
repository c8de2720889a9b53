import hashlib
import json
import math
import os
import shlex
from pathlib import Path

import pandas as pd
import yaml


def non_finite(value, key=""):
    """Config keys holding nan or inf: JSON Schema bounds cannot refuse them (every comparison with
    nan is false), so they would pass the schema and reach training."""
    if isinstance(value, dict):
        return [
            k for name, sub in value.items() for k in non_finite(sub, f"{key}{name}.")
        ]
    if isinstance(value, list):
        return [
            k
            for i, sub in enumerate(value)
            for k in non_finite(sub, f"{key[:-1]}[{i}].")
        ]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{key[:-1]} ({value})"]
    return []


if bad := non_finite(config):
    raise WorkflowError(
        f"config key {', '.join(bad)}: not a finite number; give a number (YAML's .nan and .inf "
        "are refused)"
    )

DATASET = config["dataset"]
RESULTS = f"results/{DATASET['name']}"
PRECOMPUTED = "features_dir" in DATASET
EXTRACTOR = "precomputed" if PRECOMPUTED else config["features"]["extractor"]
# The folder of the clips' files: audio, or precomputed feature vectors.
CLIP_ROOT = DATASET["features_dir"] if PRECOMPUTED else DATASET["audio_root"]
# True when a rule of this workflow writes the annotations (the demo, a corpus, a converter).
GENERATED_ANNOTATIONS = (
    config["demo"].get("generate", False)
    or config["corpus"].get("generate", False)
    or "authors_csv_dir" in DATASET
)

if "authors_csv_dir" in DATASET and not os.path.isdir(DATASET["authors_csv_dir"]):
    raise WorkflowError(
        f"dataset.authors_csv_dir: {DATASET['authors_csv_dir']} is not a folder. It should hold the "
        "authors' train.csv and val.csv (for TUT 2016: shared/data/tut2016-vggish beside the "
        "repository); fix the path in your config."
    )
SRC = Path(workflow.basedir, "src", "rbl")
SCHEMA = yaml.safe_load(
    Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml").read_text()
)
ENV = "../../environment.yml"


def code_version(*modules):
    """Hash of the package modules behind a rule, so that a code change reruns only what it affects."""
    digest = hashlib.sha256()
    for name in modules:
        target = SRC / name
        files = (
            sorted(target.rglob("*.py"))
            if target.is_dir()
            else [target.with_suffix(".py")]
        )
        for path in files:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def experiment(name):
    """An experiment's settings with the schema's defaults filled in."""
    props = SCHEMA["properties"]["experiments"]["additionalProperties"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    return {**defaults, **config["experiments"][name]}


def trained(name):
    return experiment(name)["loss"] != "none"


def seeds_of(name):
    """InitEmb involves no randomness: one seed is enough."""
    return config["seeds"] if trained(name) else config["seeds"][:1]


def train_flags(name):
    """Every training setting as a command-line flag (the rule passes all of them explicitly).

    Shell text: every value is quoted here (shlex.join), so the rule inserts it unquoted.
    """
    args = []
    for key, value in experiment(name).items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, list):
            args += [flag, *map(str, value)] if value else []
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def clip_inputs(wildcards):
    """The annotated clip files that exist (ingest names any missing one with its row).

    Only the file column is read at parse time: no audio is opened or probed. When a rule writes
    the annotations, the clip folder stands in for its files, so the input set is the same on
    every run.
    """
    if GENERATED_ANNOTATIONS:
        return [CLIP_ROOT]
    table = DATASET["annotations"]
    if not os.access(table, os.R_OK):  # missing or unreadable: ingest names it
        return []
    files = pd.read_csv(
        table, usecols=["file"], dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    paths = (os.path.join(CLIP_ROOT, f.strip()) for f in files["file"])
    if PRECOMPUTED:
        paths = (os.path.splitext(p)[0] + ".npy" for p in paths)
    return [p for p in paths if os.path.isfile(p)]


def extractor_args():
    """The extract stage's settings (precomputed features need none of them).

    Shell text: every value is quoted here (shlex.join), so the rule inserts it unquoted.
    """
    if PRECOMPUTED:
        return (
            "--extractor precomputed --weights-dir none --download false --final-relu true "
            "--verify true --batch-clips 1 --device cpu --cache-dir none"
        )
    features = config["features"]
    vggish = features["vggish"]
    settings = {
        "extractor": EXTRACTOR,
        "weights-dir": vggish["weights_dir"],
        "download": vggish["download"],
        "final-relu": vggish["final_relu"],
        "verify": vggish["verify"],
        "precision": vggish["precision"],
        "batch-clips": features["batch_clips"],
        "device": features["device"],
        "cache-dir": features["cache_dir"],
    }
    return shlex.join(arg for k, v in settings.items() for arg in (f"--{k}", str(v)))


def embed_inputs(wildcards):
    """Normalised features, and the checkpoint unless the experiment trains nothing (InitEmb)."""
    inputs = {"features": f"{RESULTS}/features/{EXTRACTOR}.norm.npz"}
    if trained(wildcards.exp):
        inputs["checkpoint"] = (
            f"{RESULTS}/models/{wildcards.exp}/seed{wildcards.seed}/model.pt"
        )
    return inputs


def all_plots(wildcards=None):
    """Embedding pictures (first seed of every experiment, every split) and training curves."""
    plots = [
        f"{RESULTS}/plots/embeddings/{exp}/seed{seeds_of(exp)[0]}_{split}.png"
        for exp in config["experiments"]
        for split in ("val", "test_seen", "test_unseen")
    ]
    plots += [
        f"{RESULTS}/plots/training/{exp}.png"
        for exp in config["experiments"]
        if trained(exp)
    ]
    return plots


def run_names():
    """'experiment/seed<k>' of every trained run, in all_histories' order."""
    return [
        f"{exp}/seed{seed}"
        for exp in config["experiments"]
        if trained(exp)
        for seed in seeds_of(exp)
    ]


def all_histories(wildcards=None):
    return [f"{RESULTS}/models/{name}/history.csv" for name in run_names()]


def all_metrics(wildcards=None):
    return [
        f"{RESULTS}/metrics/{exp}/seed{seed}.json"
        for exp in config["experiments"]
        for seed in seeds_of(exp)
    ]
