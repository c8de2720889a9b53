"""Training that survives being killed: the saved state is continued bit for bit (CPU), a state of
another run or a damaged one is ignored, and outputs keep the mode the umask gives."""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import rbl
from rbl import atomic
from rbl.cache import Cache
from rbl.cli import main
from rbl.experiment import TrainSettings
from rbl.train import ResumeFile, code_hash, fit, run_key

from runs import PROFILE, kill_when, rbl_process, snakemake_cmd, workflow_env
from test_interrupt import tiny_training_data

CPU = torch.device("cpu")


def tiny_arrays() -> tuple[np.ndarray, ...]:
    """40 clips, 16-d, 2 families x 2 kinds: 30 for training, 10 for validation."""
    rng = np.random.default_rng(0)
    kinds = np.repeat(np.arange(4), 10)
    x = (rng.standard_normal((40, 16)) + kinds[:, None] * 0.5).astype(np.float32)
    y = np.stack([kinds // 2, kinds], axis=1)
    order = rng.permutation(40)
    x, y = x[order], y[order]
    return x[:30], y[:30], x[30:], y[30:]


SETTINGS = {
    "adam, balanced": TrainSettings(
        optimizer="adam", lr=0.01, batch_size=8, max_epochs=30, patience=30, hidden=(8,), out_dim=3
    ),
    "sgd momentum, random": TrainSettings(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        sampler="random",
        batch_size=8,
        max_epochs=30,
        patience=30,
        hidden=(8,),
        out_dim=3,
    ),
    "quadruplet, early stop": TrainSettings(
        loss="quadruplet",
        optimizer="adamw",
        lr=0.05,
        weight_decay=0.01,
        batch_size=8,
        max_epochs=40,
        patience=10,
        out_dim=3,
        hidden=(),
    ),  # stops at 27
}


class Killed(Exception):
    """Stands for the process dying between two saves."""


def interrupted_fit(monkeypatch, arrays, settings, resume: ResumeFile, saves_before_kill: int) -> None:
    """Run fit until it is about to write its (saves_before_kill + 1)-th save, then die."""
    real_save, calls = ResumeFile.save, []

    def save(self, state):
        calls.append(state["epoch"])
        if len(calls) > saves_before_kill:
            raise Killed
        real_save(self, state)

    monkeypatch.setattr(ResumeFile, "save", save)
    with pytest.raises(Killed):
        fit(*arrays, settings, 7, CPU, progress=False, resume=resume)
    monkeypatch.setattr(ResumeFile, "save", real_save)
    return calls


def assert_same_run(a: tuple[dict, pd.DataFrame], b: tuple[dict, pd.DataFrame]) -> None:
    (ca, ha), (cb, hb) = a, b
    assert ca.keys() == cb.keys() and ca["state_dict"].keys() == cb["state_dict"].keys()
    assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"])
    assert {k: v for k, v in ca.items() if k != "state_dict"} == {k: v for k, v in cb.items() if k != "state_dict"}
    assert ha.to_csv(index=False) == hb.to_csv(index=False)  # every float, NaNs included, bit for bit
    assert list(ha.dtypes) == list(hb.dtypes)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_an_interrupted_fit_resumes_bit_for_bit(tmp_path, monkeypatch, caplog, name):
    arrays, settings = tiny_arrays(), SETTINGS[name]
    whole = fit(*arrays, settings, 7, CPU, progress=False)
    # Saving (every epoch here) changes nothing in the run.
    assert_same_run(fit(*arrays, settings, 7, CPU, progress=False, resume=ResumeFile(tmp_path / "e1.pt", 1)), whole)

    resume = ResumeFile(tmp_path / "state.pt", 4)
    calls = interrupted_fit(monkeypatch, arrays, settings, resume, saves_before_kill=2)
    assert calls == [4, 8, 12]  # killed at epoch 12, after its training and before the save: 8 is on disk
    with caplog.at_level(logging.INFO, logger="rbl.train"):
        resumed = fit(*arrays, settings, 7, CPU, progress=False, resume=resume)
    assert "resuming from epoch 8 " in caplog.text
    assert_same_run(resumed, whole)
    # The other run of the same settings is not a copy of this one (the comparison can fail).
    other = fit(*arrays, settings, 8, CPU, progress=False)
    assert not all(torch.equal(v, other[0]["state_dict"][k]) for k, v in whole[0]["state_dict"].items())


def test_a_killed_training_command_resumes_bit_for_bit(tmp_path, caplog):
    """`rbl train` killed with SIGKILL once it has saved state; the same command again continues."""
    tiny_training_data(tmp_path)
    resume = tmp_path / "resume" / "run.pt"

    def args(out: str, *extra: str) -> list[str]:
        return [
            "--quiet",
            "train",
            "--features",
            str(tmp_path / "x.npz"),
            "--manifest",
            str(tmp_path / "manifest.csv"),
            "--taxonomy",
            str(tmp_path / "taxonomy.csv"),
            "--splits",
            str(tmp_path / "splits.csv"),
            "--seed",
            "3",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / f"{out}.pt"),
            "--history",
            str(tmp_path / f"{out}.csv"),
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--batch-size",
            "8",
            "--max-epochs",
            "400",
            "--patience",
            "400",
            "--hidden",
            "8",
            *extra,
        ]

    killed = args("run", "--resume", str(resume), "--checkpoint-every", "5")
    kill_when(rbl_process(killed), resume.exists, "training", poll=0.002)
    assert not (tmp_path / "run.pt").exists() and not (tmp_path / "run.csv").exists()

    cut_short = resume.with_name(f".{resume.name}.0a1b2c3d4e5f.tmp.pt")  # a save the kill interrupted
    cut_short.write_bytes(b"half")
    with caplog.at_level(logging.INFO, logger="rbl.train"):
        assert main(killed) == 0
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming from epoch")]
    epoch = int(line.split()[3])
    assert 5 <= epoch < 400 and epoch % 5 == 0
    assert list(resume.parent.iterdir()) == []  # removed once the outputs are written, temporaries too
    assert main(args("whole")) == 0  # never interrupted, no state saved
    a, b = (torch.load(tmp_path / f"{k}.pt", weights_only=True) for k in ("run", "whole"))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert {k: v for k, v in a.items() if k != "state_dict"} == {k: v for k, v in b.items() if k != "state_dict"}
    assert (tmp_path / "run.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "run.csv")) == 401


def test_a_state_of_another_run_is_ignored(tmp_path, monkeypatch, caplog):
    arrays, settings = tiny_arrays(), SETTINGS["adam, balanced"]
    resume = ResumeFile(tmp_path / "state.pt", 3)
    interrupted_fit(monkeypatch, arrays, settings, resume, saves_before_kill=2)
    stale = resume.path.read_bytes()
    changed = {
        "settings": (arrays, dataclasses.replace(settings, lr=0.02), 7),
        "seed": (arrays, settings, 8),
        "data": ((arrays[0] + np.float32(1e-3), *arrays[1:]), settings, 7),
        "labels": ((arrays[0], arrays[1][::-1].copy(), *arrays[2:]), settings, 7),
    }
    for what, (data, other, seed) in changed.items():
        resume.path.write_bytes(stale)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rbl.train"):
            got = fit(*data, other, seed, CPU, progress=False, resume=resume)
        assert "belongs to another run" in caplog.text and "resuming" not in caplog.text, what
        assert_same_run(got, fit(*data, other, seed, CPU, progress=False))
    # The unchanged run does take it (so the refusals above are not a resume that never works).
    resume.path.write_bytes(stale)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rbl.train"):
        fit(*arrays, settings, 7, CPU, progress=False, resume=resume)
    assert "resuming from epoch 6 " in caplog.text


def test_the_key_covers_every_setting_the_seed_device_and_code(tmp_path):
    arrays, settings = tiny_arrays(), SETTINGS["adam, balanced"]
    key = run_key(list(arrays), settings, 0, CPU)
    assert run_key([a.copy() for a in arrays], settings, 0, CPU) == key
    others = {run_key(list(arrays), settings, 1, CPU), run_key(list(arrays), settings, 0, torch.device("cuda"))}
    for field in dataclasses.fields(TrainSettings):
        value = getattr(settings, field.name)
        new = value + (1,) if isinstance(value, tuple) else value + "x" if isinstance(value, str) else value + 1
        others.add(run_key(list(arrays), dataclasses.replace(settings, **{field.name: new}), 0, CPU))
    assert key not in others and len(others) == 2 + len(dataclasses.fields(TrainSettings))
    # The code: a one-byte change to a module training runs changes the hash.
    copy = tmp_path / "rbl"
    shutil.copytree(Path(rbl.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_hash(copy) == code_hash()
    (copy / "sampling.py").write_text((copy / "sampling.py").read_text() + "\n")
    assert code_hash(copy) != code_hash()


def _damage(path: Path, how: str) -> None:
    state = torch.load(path, weights_only=True)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "code inside":  # a pickle that runs code on load: refused by weights_only
        path.write_bytes(pickle.dumps(Killed(), protocol=2))
    elif how == "wrong shapes":
        state["model"] = {k: torch.zeros(2, 2) for k in state["model"]}
        torch.save(state, path)
    elif how == "bad generator":
        state["numpy_rng"] = '{"bit_generator": "nope"}'
        torch.save(state, path)
    elif how == "history too short":
        state["history"] = state["history"][:-1]
        torch.save(state, path)
    elif how == "missing fields":
        torch.save({"format": state["format"], "key": state["key"], "epoch": state["epoch"]}, path)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "empty",
        "garbage",
        "code inside",
        "wrong shapes",
        "bad generator",
        "history too short",
        "missing fields",
    ],
)
def test_a_damaged_state_is_ignored_with_a_warning(tmp_path, monkeypatch, caplog, how):
    arrays, settings = tiny_arrays(), SETTINGS["sgd momentum, random"]
    resume = ResumeFile(tmp_path / "state.pt", 5)
    interrupted_fit(monkeypatch, arrays, settings, resume, saves_before_kill=2)
    _damage(resume.path, how)
    with caplog.at_level(logging.INFO, logger="rbl.train"):
        got = fit(*arrays, settings, 7, CPU, progress=False, resume=resume)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "ignoring it and training from epoch 0" in warnings[0].getMessage()
    assert "resuming" not in caplog.text
    assert_same_run(got, fit(*arrays, settings, 7, CPU, progress=False))
    assert torch.load(resume.path, weights_only=True)["epoch"] == 25  # overwritten by a good state


def test_resume_needs_an_interval(tmp_path, capsys):
    args = [
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
        "--resume",
        str(tmp_path / "r.pt"),
    ]
    assert main(args) == 2
    assert "--resume needs --checkpoint-every" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--checkpoint-every", "0"])
    assert "expected at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1 epoch"):
        ResumeFile(tmp_path / "r.pt", 0)


# --- file modes ------------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o027, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_outputs_and_cache_entries_get_the_mode_of_a_plain_open(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as handle:
        handle.write("x")
    expected = 0o666 & ~umask
    assert plain.stat().st_mode & 0o7777 == expected
    atomic.write_text(tmp_path / "a.txt", "a")
    with atomic.atomic_path(tmp_path / "sub" / "b.bin") as tmp:  # a new folder too
        tmp.write_bytes(b"b")
    atomic.write_csv_rows(tmp_path / "c.csv", ["h"], [["1"]])
    with atomic.atomic_path(tmp_path / "d.npz") as tmp:
        np.savez(tmp, x=np.zeros(3))
    with atomic.atomic_path(tmp_path / "e.pt") as tmp:
        torch.save({"w": torch.ones(2)}, tmp)
    cache = Cache(tmp_path / "cache", {"extractor": "logmel"})
    cache.describe()
    cache.put("ab" * 32, np.ones(128, np.float32))
    resume = ResumeFile(tmp_path / "resume" / "seed0.pt", 1)
    resume.save({"w": torch.ones(1)})
    files = [tmp_path / n for n in ("a.txt", "sub/b.bin", "c.csv", "d.npz", "e.pt")]
    files += [cache.path("ab" * 32), cache.dir / "settings.json", resume.path]
    assert {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o7777) for p in files} == {
        str(p.relative_to(tmp_path)): oct(expected) for p in files
    }
    assert cache.get("ab" * 32) is not None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


# --- the workflow ----------------------------------------------------------------------------


def test_a_killed_workflow_resumes_training_after_unlock(tmp_path):
    """kill -9 of snakemake and its running training job, then README's recovery: `snakemake --unlock`
    and the same command again, which continues the training from its saved state."""
    from test_workflow import CONFIG

    config = {
        **CONFIG,
        "seeds": [0],
        "train": {**CONFIG["train"], "checkpoint_every": 5},
        "experiments": {
            "InitEmb": {"loss": "none"},
            "RbL": {"loss": "rank", "optimizer": "adam", "lr": 0.01, "max_epochs": 600, "patience": 600},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = workflow_env()
    command = snakemake_cmd(tmp_path, "--workflow-profile", str(PROFILE))
    resume = tmp_path / "results/mini/resume/RbL/seed0.pt"
    log = tmp_path / "results/mini/logs/train/RbL/seed0.log"
    # Its own session, so the kill takes snakemake and the job it runs together, as when the
    # terminal, the login session or the node goes away.
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    kill_when(proc, resume.exists, "training under the workflow", timeout=600, poll=0.01, group=True)
    assert not (tmp_path / "results/mini/models/RbL/seed0/model.pt").exists()

    # What Snakemake 9 does next: the lock of the killed run remains and stops the same command.
    locked = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert locked.returncode != 0 and "Directory cannot be locked" in locked.stderr
    assert subprocess.run([*command, "--unlock"], capture_output=True, env=env, timeout=600).returncode == 0
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    resumed = [line for line in log.read_text().splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1, log.read_text()[-2000:]
    assert int(resumed[0].split("resuming from epoch ")[1].split()[0]) >= 5
    history = pd.read_csv(tmp_path / "results/mini/models/RbL/seed0/history.csv")
    assert list(history["epoch"]) == list(range(601))
    assert not resume.exists()  # removed once the outputs were written
    assert (tmp_path / "results/mini/summary.csv").exists()
    # Finished: the removed state file is no reason to run anything again.
    dry = subprocess.run([*command, "-n"], capture_output=True, text=True, env=env, timeout=600)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
