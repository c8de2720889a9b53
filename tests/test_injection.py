"""Config values never reach a shell as code: hostile paths arrive at the `rbl` commands as one
argument each, unchanged; names that would leave results/ or read as options are refused, and so is
nan/inf; the documented commands load the profile that shows a failed job's log on the console.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml

from runs import NO_OVERRIDE, REPO, load_test_config, snakemake

# Spaces, both quotes, command substitution both ways, a command separator, a glob, a backslash.
HOSTILE = "a b'c\"d $(touch pwned1) `touch pwned2`;touch pwned3 & * \\x"
PWNED = {"pwned1", "pwned2", "pwned3"}


def demo_config(data: str, cache: str, weights: str, experiments: dict | None = None) -> dict:
    """The reduced demo (.test/config/config.yaml) with the given data folder, feature cache and
    weights folder, one seed and one extraction shard."""
    config = load_test_config()
    config["dataset"].update(
        audio_root=f"{data}/audio", annotations=f"{data}/annotations.csv", taxonomy=f"{data}/taxonomy.csv"
    )
    config["demo"]["out_dir"] = data
    config["features"].update(cache_dir=cache, workers=1, shards=1)
    config["features"]["vggish"]["weights_dir"] = weights
    config["seeds"] = [0]
    config["experiments"] = experiments or {"InitEmb": {"loss": "none"}}
    return config


def pwned(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name in PWNED]


def shell_commands(output: str) -> dict[str, list[str]]:
    """The argument list of every planned `rbl` command in a dry run's output, by stage."""
    commands = {}
    for line in output.splitlines():
        if line.startswith("Shell command: rbl "):
            args = shlex.split(line.removeprefix("Shell command: "))
            stage = next(a for a in args[1:] if not a.startswith("-"))
            commands.setdefault(stage, args)
    return commands


def value_of(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_hostile_paths_reach_every_command_as_one_unchanged_argument(tmp_path):
    """Every rule that takes a config path, dry-run: the shell would hand each value over intact."""
    authors = tmp_path / f"authors {HOSTILE}"
    authors.mkdir()
    for name in ("train.csv", "val.csv"):
        (authors / name).write_text("")
    config = demo_config(
        f"data {HOSTILE}",
        f"cache {HOSTILE}",
        f"weights {HOSTILE}",
        {"InitEmb": {"loss": "none"}, "RbL": {"loss": "rank", "max_epochs": 1}},
    )
    converted = demo_config(f"conv {HOSTILE}", f"cache {HOSTILE}", f"weights {HOSTILE}")
    converted["dataset"]["authors_csv_dir"] = str(authors)
    converted["demo"]["generate"] = False
    (tmp_path / f"conv {HOSTILE}/audio").mkdir(parents=True)
    for conf, stages in (
        (config, {"demo", "ingest", "extract", "train", "summarise"}),
        (converted, {"convert-authors", "ingest"}),
    ):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
        out = snakemake(tmp_path, "-n", "-p")
        assert out.returncode == 0, out.stderr[-3000:]
        commands = shell_commands(out.stdout + out.stderr)
        assert stages <= set(commands), sorted(commands)
        data = conf["demo"]["out_dir"]
        assert value_of(commands["ingest"], "--audio-root") == f"{data}/audio"
        assert value_of(commands["ingest"], "--taxonomy") == f"{data}/taxonomy.csv"
        if "authors_csv_dir" in conf["dataset"]:
            assert value_of(commands["convert-authors"], "--dir") == str(authors)
            assert value_of(commands["convert-authors"], "--out-annotations") == f"{data}/annotations.csv"
        else:
            assert value_of(commands["demo"], "--out") == data
            assert value_of(commands["extract"], "--cache-dir") == f"cache {HOSTILE}"
            assert value_of(commands["extract"], "--weights-dir") == f"weights {HOSTILE}"
            assert value_of(commands["train"], "--max-epochs") == "1"
            assert commands["summarise"][commands["summarise"].index("--names") + 1] == "RbL/seed0"
    assert not pwned(tmp_path)


def test_hostile_paths_run_the_whole_workflow_and_run_nothing_else(tmp_path):
    """The real run, in a working folder whose own name holds a space and a `$(...)`."""
    workdir = tmp_path / "work dir $(touch pwned1)"
    workdir.mkdir()
    config = demo_config(
        f"data {HOSTILE}",
        f"cache {HOSTILE}",
        f"weights {HOSTILE}",
        {"InitEmb": {"loss": "none"}, "RbL": {"loss": "rank", "optimizer": "adam", "lr": 0.01, "max_epochs": 1}},
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(workdir)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = pd.read_csv(workdir / "results/mini/summary.csv")
    assert set(summary["experiment"]) == {"InitEmb", "RbL"}
    assert (workdir / f"data {HOSTILE}/audio").is_dir()
    assert any((workdir / f"cache {HOSTILE}").rglob("*"))  # the cache went where the config says
    assert not pwned(tmp_path, Path.cwd())


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["dataset"].update(name=".."), "key dataset.name:"),
        (lambda c: c["dataset"].update(name="."), "key dataset.name:"),
        (lambda c: c["dataset"].update(name="-n"), "key dataset.name:"),
        (lambda c: c["dataset"].update(name="a b"), "key dataset.name:"),
        (lambda c: c["experiments"].update({"..": {"loss": "none"}}), "'..'"),
        (lambda c: c["experiments"].update({"-h": {"loss": "none"}}), "'-h'"),
        (lambda c: c["features"].update(cache_dir="--help"), "key features.cache_dir:"),
        (lambda c: c["features"].update(cache_dir=""), "key features.cache_dir:"),
        (lambda c: c["dataset"].update(audio_root="-x/audio"), "key dataset.audio_root:"),
        (lambda c: c["experiments"]["RbL"].update(lr=float("nan")), "experiments.RbL.lr (nan)"),
        (lambda c: c["experiments"]["RbL"].update(lr=float("inf")), "experiments.RbL.lr (inf)"),
        (lambda c: c["experiments"]["RbL"].update(margins=[0.1, float("nan")]), "experiments.RbL.margins[1] (nan)"),
        (lambda c: c["split"]["fractions"].update(val=float("inf")), "split.fractions.val (inf)"),
        (lambda c: c["train"].update(collapse_spread=float("inf")), "train.collapse_spread (inf)"),
    ],
)
def test_names_paths_and_numbers_that_would_break_a_run_are_refused(tmp_path, edit, key):
    config = demo_config(
        "data", "cache", "weights", {"InitEmb": {"loss": "none"}, "RbL": {"loss": "rank", "max_epochs": 1}}
    )
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert key in text, text[-2000:]
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 30, text
    assert not (tmp_path / "results").exists()


def test_experiment_names_are_matched_literally(tmp_path):
    """A '.' in an experiment name is a character, not a regex wildcard: 'a.b' does not claim 'aXb'."""
    config = demo_config("data", "cache", "weights", {"a.b": {"loss": "none"}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(tmp_path, "-n", "results/mini/metrics/a.b/seed0.json").returncode == 0
    out = snakemake(tmp_path, "-n", "results/mini/metrics/aXb/seed0.json")
    assert out.returncode != 0 and "MissingRuleException" in out.stdout + out.stderr


# --- the documented commands ------------------------------------------------------------------


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) of every snakemake command in the READMEs' code blocks, continuations joined."""
    found = []
    for name in ("README.md", "config/README.md"):
        text = (REPO / name).read_text()
        blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
        inline = re.findall(r"`(snakemake [^`]*)`", text)
        for block in blocks:
            for command in block.replace("\\\n", " ").splitlines():
                if command.strip().startswith("snakemake "):
                    found.append((name, command.split("#")[0].strip()))
        found += [(name, c) for c in inline if "--lint" not in c]
    return found


def test_every_documented_command_loads_a_profile_that_shows_failed_logs():
    commands = documented_commands()
    assert len(commands) >= 5, commands
    for name, command in commands:
        args = shlex.split(command)
        assert "--workflow-profile" in args, f"{name}: {command}"
        profile = yaml.safe_load((REPO / value_of(args, "--workflow-profile") / "config.yaml").read_text())
        assert profile["show-failed-logs"] is True and profile["rerun-incomplete"] is True, name


@pytest.mark.parametrize("case", ["reserved level", "unreadable annotations"])
def test_a_failed_job_shows_its_message_on_the_console(tmp_path, case):
    """Bad input under the documented command: the stage's message, naming the file, on the console."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "audio").mkdir()
    (data / "audio/x.wav").write_bytes(b"")
    (data / "taxonomy.csv").write_text("family,kind\nA,a1\nA,a2\n")
    (data / "annotations.csv").write_text("file,label\nx.wav,a1\n")
    config = demo_config("data", "cache", "weights")
    config["demo"]["generate"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    prefix = ()
    if case == "reserved level":
        (data / "taxonomy.csv").write_text("family,group\nA,a1\nA,a2\n")
        message = "error: data/taxonomy.csv: level 'group' is a reserved name"
    else:
        (data / "annotations.csv").chmod(0)
        prefix = NO_OVERRIDE
        message = "error: data/annotations.csv: cannot be read (Permission denied)"
    try:
        out = snakemake(tmp_path, "results/mini/manifest.csv", profile=True, prefix=prefix)
    finally:
        (data / "annotations.csv").chmod(0o644)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    if case == "reserved level":  # the job's log, shown on the console by the profile
        log = (tmp_path / "results/mini/logs/ingest.log").read_text()
        assert message in log and "Traceback" not in log and len(log.splitlines()) <= 30
    else:  # the annotations are read (fingerprinted) before any job runs: no job, the same message
        assert not (tmp_path / "results/mini/logs/ingest.log").exists()
    assert "Traceback" not in out.stdout + out.stderr
