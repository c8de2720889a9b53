"""Running the workflow and the `rbl` command in subprocesses, as the tests that need a real run do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow/profiles/default"
# As root (tests in containers), file permissions apply only without these capabilities: a prefix
# for commands whose permission errors a test checks.
NO_OVERRIDE = (
    (
        "setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps",
        "-dac_override,-dac_read_search",
        "--",
    )
    if os.geteuid() == 0
    else ()
)


def load_test_config(name: str = "config.yaml") -> dict:
    """A test configuration from .test/config/ (a fresh copy: tests may edit it)."""
    return yaml.safe_load((REPO / ".test" / "config" / name).read_text())


def workflow_env() -> dict[str, str]:
    """This Python's bin folder first on PATH, so Snakemake's jobs find this environment's `rbl`."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The command line of the repository's workflow on workdir with workdir/config.yaml."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, profile: bool = False, prefix: tuple[str, ...] = (), cores: int = 2
) -> subprocess.CompletedProcess:
    """Run the workflow (optionally with the default profile, as the README's commands do)."""
    extra = ["--workflow-profile", str(PROFILE)] if profile else []
    cmd = [*prefix, *snakemake_cmd(workdir, *extra, "--cores", str(cores), *args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=workflow_env(), timeout=900, cwd=workdir)


def planned_rules(workdir: Path) -> set[str]:
    """Rules a dry run would execute (from Snakemake's job stats table)."""
    out = snakemake(workdir, "-n")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", table, re.M)} - {"job", "all"}


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def rbl_process(args: list[str], stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m rbl.cli ARGS` with this test session's import path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "rbl.cli", *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def kill_when(
    proc: subprocess.Popen,
    ready: Callable[[], bool],
    what: str,
    timeout: float = 120,
    poll: float = 0.005,
    group: bool = False,
) -> None:
    """SIGKILL the process (with `group`, its whole process group) as soon as `ready()` holds; fail if
    it ends first or makes no progress."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"{what} ended before it could be interrupted"
            assert time.monotonic() < deadline, f"{what} made no progress"
            time.sleep(poll)
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def logmel_extract_args(
    manifest: Path, cache: Path, out: Path | str, *extra, batch_clips: int = 4, workers: int = 1
) -> list[str]:
    """`rbl extract` arguments: the weightless logmel extractor on the CPU, features to out.npy and
    the record to out.json; `extra` appended (e.g. --shard, --on-error)."""
    return [
        "--quiet", "extract", "--manifest", str(manifest), "--extractor", "logmel", "--weights-dir", "none",
        "--download", "false", "--final-relu", "true", "--verify", "true", "--batch-clips", str(batch_clips),
        "--workers", str(workers), "--device", "cpu", "--cache-dir", str(cache), "--out", f"{out}.npy",
        "--info", f"{out}.json", *map(str, extra),
    ]  # fmt: skip
