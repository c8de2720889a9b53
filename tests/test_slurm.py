"""The workflow on a real one-node SLURM through the cluster profile (workflow/profiles/slurm).

The module brings SLURM up with scripts/slurm/ (install, start; stop at teardown), submits the
reduced demo through snakemake-executor-plugin-slurm with the profile, and checks SLURM's own
records of every job against what Snakemake ran, and the results against a local run.

Needs root (apt packages, slurmd, munged). Elsewhere it skips, saying why; with
RBL_REQUIRE_SLURM=1 (set by .ci/run) every such reason fails it instead.
"""

import copy
import fcntl
import os
import re
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from runs import snakemake_cmd, workflow_env
from test_workflow import CONFIG as WORKFLOW_CONFIG

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "slurm"
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
REQUIRED = os.environ.get("RBL_REQUIRE_SLURM") == "1"
PARTITION = "rbltest"
# One such SLURM per machine (clients and job steps read /etc/slurm/slurm.conf): concurrent runs
# of this module (two people's `make test`) take turns through this lock.
LOCK = Path("/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()) / "rbl-slurm-test.lock"

# test_workflow's reduced demo, smaller still: one seed, three epochs, two extraction shards.
# Training asks for one GPU (the test node has one fake GPU) and runs on the CPU; extraction asks
# for none. gpus only shapes the SLURM request, so the local run (same config) must agree exactly.
CONFIG = copy.deepcopy(WORKFLOW_CONFIG)
CONFIG["demo"]["clips_per_class"] = 8
CONFIG["seeds"] = [0]
CONFIG["experiments"] = {"InitEmb": {"loss": "none"}, "RbL": {**WORKFLOW_CONFIG["experiments"]["RbL"], "max_epochs": 3}}
CONFIG["features"].update(shards=2, gpus=0, device="cpu", workers=min(2, os.cpu_count() or 1))
CONFIG["train"].update(gpus=1, device="cpu")
NAME = CONFIG["dataset"]["name"]


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (RBL_REQUIRE_SLURM=1: this test has to run here)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scontrol_records() -> dict[str, dict]:
    """SLURM's record of every job it still knows (MinJobAge is an hour on the test node)."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True)
    records = {}
    for line in out.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


def minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS as minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def jobs_of(log: str) -> dict[str, tuple[str, bool]]:
    """Snakemake job id -> (rule, ran locally) from a run's output ('rule x:' / 'localrule x:')."""
    jobs, current = {}, None
    for line in log.splitlines():
        header = re.match(r"^(local)?rule (\w+):$", line)
        if header:
            current = (header.group(2), bool(header.group(1)))
        elif current and (m := re.match(r"^\s+jobid: (\d+)$", line)):
            jobs[m.group(1)] = current
            current = None
    return jobs


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node SLURM from scripts/slurm/, stopped again (by its PIDs) at teardown."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install snakemake-executor-plugin-slurm)")
    if os.geteuid() != 0:
        unavailable("needs root: installs slurm-wlm and munge, starts slurmctld, slurmd and munged")
    lock = open(LOCK, "w")
    deadline = time.monotonic() + (1200 if REQUIRED else 0)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                unavailable(f"another run of tests/test_slurm.py holds {LOCK} (one test SLURM per machine)")
            time.sleep(5)
    try:
        yield from _slurm(tmp_path_factory)
    finally:
        lock.close()


def _slurm(tmp_path_factory):
    install = subprocess.run([str(SCRIPTS / "install.sh")], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        unavailable(f"SLURM packages could not be installed: {(install.stdout + install.stderr)[-1500:]}")
    state = tmp_path_factory.mktemp("slurm")
    start_env = {
        **os.environ,
        "SLURM_PARTITION": PARTITION,
        "SLURM_FAKE_GPU": "1",
        "SLURM_CTLD_PORT": str(free_port()),
        "SLURMD_PORT": str(free_port()),
    }
    start = subprocess.run(
        [str(SCRIPTS / "start.sh"), str(state)], capture_output=True, text=True, env=start_env, timeout=300
    )
    try:
        if start.returncode != 0 and (
            "was not written by this script" in start.stderr or "another one-node SLURM" in start.stderr
        ):
            unavailable(f"this machine runs another SLURM: {start.stderr.strip()}")
        assert start.returncode == 0, start.stdout + start.stderr
        node = dict(
            re.findall(
                r"(\w+)=(\S*)",
                subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True, text=True, check=True).stdout,
            )
        )
        yield {"dir": state, "host": node["NodeName"], "memory": int(node["RealMemory"])}
    finally:
        stop = subprocess.run([str(SCRIPTS / "stop.sh"), str(state)], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not list((state / "run").glob("*.pid")), "a daemon outlived stop.sh"


def profile_for(node_memory: int, workdir: Path) -> tuple[Path, dict]:
    """The profile to submit with, and each rule's first-attempt resources as it asks for them.

    That is the profile file itself, unless the test node has less memory than the profile asks of
    a cluster node: then a copy with every memory request capped at half the node.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    first = {
        rule: {key: eval(str(expr), {}, {"attempt": 1}) for key, expr in res.items()}
        for rule, res in profile["set-resources"].items()
    }
    cap = node_memory // 2
    if max(res["mem_mb"] for res in first.values()) <= cap:
        return PROFILE, first
    for rule, res in profile["set-resources"].items():
        res["mem_mb"] = f"min({res['mem_mb']}, {cap})"
        first[rule]["mem_mb"] = min(first[rule]["mem_mb"], cap)
    capped = workdir / "profile" / "config.yaml"
    capped.parent.mkdir()
    capped.write_text(yaml.safe_dump(profile, sort_keys=False))
    return capped, first


def megabytes(size: str) -> int:
    """SLURM's memory sizes (4000M, 2G) in MB."""
    return round(float(size[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[size[-1]])


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    """The same config run through SLURM with the profile, and locally (both at once)."""
    local_dir, slurm_dir = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("on_slurm")
    for workdir in (local_dir, slurm_dir):
        (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    profile, resources = profile_for(slurm["memory"], slurm_dir)
    local_log = open(local_dir / "run.log", "w")
    local = subprocess.Popen(
        snakemake_cmd(local_dir, "--cores", "2"),
        stdout=local_log,
        stderr=subprocess.STDOUT,
        text=True,
        env=workflow_env(),
    )
    try:
        # What a user types on a cluster, plus quicker status checks for seconds-long jobs and
        # SLURM's logs of successful jobs kept as evidence.
        cmd = snakemake_cmd(
            slurm_dir,
            "--workflow-profile",
            str(profile.parent),
            "--default-resources",
            f"slurm_partition={PARTITION}",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--slurm-keep-successful-logs",
        )
        on_slurm = subprocess.run(cmd, capture_output=True, text=True, env=workflow_env(), timeout=720)
        (slurm_dir / "run.log").write_text(on_slurm.stdout + on_slurm.stderr)
        ctld_log = (slurm["dir"] / "log" / "slurmctld.log").read_text(errors="replace")
        assert on_slurm.returncode == 0, on_slurm.stderr[-5000:] + "\n--- slurmctld.log\n" + ctld_log[-2000:]
        assert local.wait(timeout=600) == 0, (local_dir / "run.log").read_text()[-5000:]
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
        local_log.close()
    return {
        "local": local_dir,
        "slurm": slurm_dir,
        "log": on_slurm.stdout + on_slurm.stderr,
        "records": scontrol_records(),
        "resources": resources,
        **slurm,
    }


def test_every_cluster_job_ran_as_a_slurm_job(runs):
    log = runs["log"]
    jobs = jobs_of(log)
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    remote = {job: rule for job, (rule, is_local) in jobs.items() if not is_local}
    local = {job: rule for job, (rule, is_local) in jobs.items() if is_local}
    assert set(submitted) == set(remote), "a non-local job was not submitted, or a local one was"
    assert {"ingest", "extract", "gather_features", "normalise", "train", "embed", "evaluate"} <= set(remote.values())
    assert Counter(remote.values())["extract"] == CONFIG["features"]["shards"]
    assert "all" in local.values()

    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    records = runs["records"]
    ours = {jid for jid, rec in records.items() if rec.get("JobName") == run_id}
    assert ours == set(submitted.values()), "SLURM knows other jobs of this run than Snakemake submitted"
    for job, slurm_id in submitted.items():
        rule, rec = remote[job], records[slurm_id]
        where = f"rule {rule}, SLURM job {slurm_id}"
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", where
        assert rec["Comment"].startswith(f"rule_{rule}"), where
        assert rec["NodeList"] == runs["host"] and rec["Partition"] == PARTITION, where
        # The profile's per-rule resources, as SLURM granted them.
        expected = runs["resources"][rule]
        assert minutes(rec["TimeLimit"]) == expected["runtime"], where
        assert megabytes(rec["MinMemoryNode"]) == expected["mem_mb"], where
        cpus = expected.get("cpus_per_task", CONFIG["features"]["workers"] if rule == "extract" else 1)
        assert int(rec["NumCPUs"]) == cpus, where
        # gpu=0 (extract, and every rule without one) requests no GPU; train's gpus: 1 requests one.
        if rule == "train":
            assert rec.get("TresPerJob") == "gres:gpu:1", where
        else:
            assert "gpu" not in rec.get("TresPerJob", "") and "gpu" not in rec.get("TRES", ""), where
        # SLURM's output file of the job holds the job step's Snakemake running this rule.
        slurm_log = next((runs["slurm"] / ".snakemake" / "slurm_logs").glob(f"rule_{rule}/**/{slurm_id}.log"))
        text = slurm_log.read_text()
        assert f"rule {rule}:" in text and "1 of 1 steps (100%) done" in text, where


def test_extraction_ran_sharded_in_the_jobs_with_a_shared_cache(runs):
    info = yaml.safe_load((runs["slurm"] / f"results/{NAME}/features/auto.json").read_text())
    assert info["shards"] == 2 and info["computed"] == info["n_clips"] and info["from_cache"] == 0
    cache = runs["slurm"] / CONFIG["features"]["cache_dir"]
    assert len(list(cache.rglob("*.vec"))) == info["n_clips"]


def test_results_equal_a_local_run(runs):
    keys = ["experiment", "split", "level", "metric"]
    on_slurm = pd.read_csv(runs["slurm"] / f"results/{NAME}/summary.csv").sort_values(keys, ignore_index=True)
    local = pd.read_csv(runs["local"] / f"results/{NAME}/summary.csv").sort_values(keys, ignore_index=True)
    assert list(on_slurm.columns) == list(local.columns) and len(on_slurm) == len(local) > 0
    numeric = on_slurm.select_dtypes("number").columns
    assert on_slurm.drop(columns=numeric).fillna("").equals(local.drop(columns=numeric).fillna(""))
    np.testing.assert_allclose(
        on_slurm[numeric].to_numpy(float), local[numeric].to_numpy(float), rtol=0, atol=1e-9, equal_nan=True
    )
    assert set(on_slurm["experiment"]) == {"InitEmb", "RbL"}
