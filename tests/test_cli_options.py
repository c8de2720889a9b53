"""The stages' options: every flag explained, choices and split names from one source each, the
extraction flags derived from ExtractSettings end to end (config -> rule -> `rbl extract`), the
console naming the extractor that ran, and the stage logic moved out of the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex

import numpy as np
import pandas as pd
import pytest
import yaml

from rbl.cli import STAGES, build_parser, main
from rbl.data import DRAWN_SPLITS, EVAL_SPLITS, SPLITS, UNSEEN
from rbl.errors import InputError
from rbl.experiment import TrainSettings
from rbl.feature_settings import EXTRACTORS, ON_ERROR, PRECISIONS, PRECOMPUTED, ExtractSettings
from rbl.sampling import SAMPLERS
from rbl.split import parse_fractions
from rbl.stages.options import settings_from
from rbl.taxonomy import shuffle_leaves
from rbl.train import resolve_out_dim, training_labels

from runs import REPO, load_test_config, snakemake

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]


def stage_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def option(stage: str, flag: str) -> argparse.Action:
    return next(a for a in stage_parsers()[stage]._actions if flag in a.option_strings)


def test_every_option_of_every_stage_has_a_help_text():
    parsers = stage_parsers()
    assert set(parsers) == set(STAGES)
    missing = [
        f"{stage} {a.option_strings[0]}"
        for stage, p in parsers.items()
        for a in p._actions
        if a.option_strings and not (a.help or "").strip()
    ]
    assert not missing, missing


def test_help_of_a_stage_shows_the_descriptions(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = capsys.readouterr().out
    assert "check the weights' sha256 prefixes" in text and "threads decoding audio" in text


def test_choices_come_from_the_package_constants_and_the_schema_agrees():
    assert option("extract", "--extractor").choices == (*EXTRACTORS, PRECOMPUTED)
    assert option("extract", "--on-error").choices == ON_ERROR
    assert option("extract", "--precision").choices == PRECISIONS
    assert option("train", "--sampler").choices == SAMPLERS
    assert option("plot-embeddings", "--split").choices == EVAL_SPLITS
    features = SCHEMA["features"]["properties"]
    assert tuple(features["extractor"]["enum"]) == EXTRACTORS
    assert tuple(features["on_error"]["enum"]) == ON_ERROR
    assert tuple(features["vggish"]["properties"]["precision"]["enum"]) == PRECISIONS
    experiment = SCHEMA["experiments"]["additionalProperties"]["properties"]
    assert tuple(experiment["sampler"]["enum"]) == SAMPLERS
    # the fractions the config sets: every split but the held-out classes' one
    assert tuple(SCHEMA["split"]["properties"]["fractions"]["properties"]) == DRAWN_SPLITS
    assert EVAL_SPLITS == tuple(s for s in SPLITS if s != "train") and UNSEEN not in DRAWN_SPLITS


def test_a_value_outside_the_choices_is_refused_naming_them(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "--features",
                "f",
                "--manifest",
                "m",
                "--taxonomy",
                "t",
                "--splits",
                "s",
                "--out",
                "o",
                "--history",
                "h",
                "--seed",
                "0",
                "--device",
                "cpu",
                "--sampler",
                "balancd",
            ]
        )
    assert exit_.value.code == 2
    assert "invalid choice: 'balancd'" in capsys.readouterr().err


def test_every_extraction_setting_names_a_config_key_with_the_same_default():
    for field in dataclasses.fields(ExtractSettings):
        node = SCHEMA
        *parents, leaf = field.metadata["config"].split(".")
        for part in parents:
            node = node[part]["properties"]
        assert leaf in node, field.name
        if "default" in node[leaf]:
            assert node[leaf]["default"] == field.default, field.name


def test_the_workflow_passes_every_extraction_setting_from_the_config(tmp_path):
    """Dry run: the extract command parses back into the ExtractSettings the config describes."""
    config = load_test_config()
    config["features"].update(batch_clips=5, on_error="skip", device="cpu", workers=1, shards=1)
    config["features"]["vggish"].update(
        weights_dir="w dir", download=False, final_relu=False, verify=False, precision="bfloat16"
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n", "-p", "--cores", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Shell command: rbl extract"))
    command = shlex.split(line.removeprefix("Shell command: rbl ").split(" 2> ")[0])
    args = build_parser().parse_args(command)
    assert settings_from(args, ExtractSettings) == ExtractSettings(
        extractor=config["features"]["extractor"],
        weights_dir="w dir",
        download=False,
        final_relu=False,
        verify=False,
        batch_clips=5,
        workers=1,
        device="cpu",
        on_error="skip",
        precision="bfloat16",
    )
    assert args.cache_dir == config["features"]["cache_dir"]


def test_gather_says_on_the_console_which_extractor_ran(tmp_path, capsys):
    pd.DataFrame({"file": ["a.wav", "b.wav", "c.wav"]}).to_csv(tmp_path / "manifest.csv", index=False)
    record = {
        "extractor": "logmel",
        "requested": "auto",
        "reason": "VGGish weights unavailable (missing:\nget them)",
        "computed": 1,
        "from_cache": 0,
        "skipped": 0,
        "skipped_clips": [],
    }
    for k, rows in enumerate((2, 1)):
        np.save(tmp_path / f"{k}.npy", np.zeros((rows, 4), np.float32))
        (tmp_path / f"{k}.json").write_text(json.dumps({**record, "n_clips": rows, "computed": rows}))
    assert (
        main(
            [
                "--quiet",
                "gather",
                "--manifest",
                str(tmp_path / "manifest.csv"),
                "--parts",
                str(tmp_path / "0.npy"),
                str(tmp_path / "1.npy"),
                "--infos",
                str(tmp_path / "0.json"),
                str(tmp_path / "1.json"),
                "--out",
                str(tmp_path / "f.npy"),
                "--info",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    # one line, however many the reason has: its first, and where the rest is
    assert capsys.readouterr().out == (
        "features: extractor logmel, requested auto; 3 clip(s) computed, 0 from "
        "the cache, 0 skipped, in 2 shard(s); why: VGGish weights unavailable "
        f"(missing: ... (in full: {tmp_path / 'f.json'})\n"
    )
    assert json.loads((tmp_path / "f.json").read_text())["extractor"] == "logmel"


def test_fractions_are_parsed_and_a_bad_item_is_named():
    assert parse_fractions("train=0.6, val=0.2,test_seen=0.2") == {"train": 0.6, "val": 0.2, "test_seen": 0.2}
    with pytest.raises(InputError, match="--fractions: 'val:0.2' is not name=number"):
        parse_fractions("train=0.6,val:0.2")


def test_training_labels_shuffle_with_the_run_seed_only_for_the_random_control():
    leaves = np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
    labels = leaves[np.arange(40) % 4]
    assert training_labels(labels, leaves, "taxonomy", 2) is labels
    shuffled = training_labels(labels, leaves, "random", 2)
    assert np.array_equal(shuffled, shuffle_leaves(labels, leaves, np.random.default_rng([2, 1])))
    assert not np.array_equal(shuffled, labels)
    assert sorted(map(tuple, shuffled[:4])) == sorted(map(tuple, leaves))  # a permutation of the leaves


def test_out_dim_auto_is_resolved_and_a_number_kept():
    from rbl.model import embedding_size

    assert resolve_out_dim(TrainSettings(), 20, 128).out_dim == embedding_size(20, 128)
    assert resolve_out_dim(TrainSettings(out_dim=5), 20, 128).out_dim == 5


def test_the_workflow_passes_every_training_setting_from_the_config(tmp_path):
    """Dry run: each train command parses back into the TrainSettings its experiment describes, an
    empty list included (`hidden: []` is the paper's linear model, not the command's default)."""
    config = load_test_config()
    config["seeds"] = [0]
    config["experiments"] = {
        "Linear": {"loss": "rank", "hidden": [], "out_dim": 3, "margins": [], "lr": 0.02, "max_epochs": 7},
        "Deep": {"loss": "quadruplet", "hidden": [16, 8], "margins": [0.1, 0.3], "sampler": "random"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n", "-p", "--cores", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Shell command: rbl train")]
    parsed = {}
    for line in lines:
        args = build_parser().parse_args(shlex.split(line.removeprefix("Shell command: rbl ").split(" 2> ")[0]))
        parsed[args.out.split("/")[-3]] = settings_from(args, TrainSettings)
    linear, deep = parsed["Linear"], parsed["Deep"]
    assert linear.hidden == () and linear.out_dim == 3 and linear.lr == 0.02 and linear.max_epochs == 7
    assert deep.hidden == (16, 8) and deep.margins == (0.1, 0.3) and deep.sampler == "random"
    assert deep.loss == "quadruplet"
