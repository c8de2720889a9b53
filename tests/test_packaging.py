"""The pip route (pyproject.toml) and the conda route (environment.yml) install the same things."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"torch": "pytorch", "soundfile": "pysoundfile", "soxr": "soxr-python"}


def split_requirement(text: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", text.strip()).groups()
    return name.lower(), spec.replace(" ", "")


def test_pip_and_conda_package_lists_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = dict(split_requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    pip = {CONDA_NAMES.get(name, name): spec for name, spec in pip.items()}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = dict(split_requirement(d) for d in env["dependencies"] if isinstance(d, str))
    conda.pop("python"), conda.pop("pip")
    assert conda == pip
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-e ."]


def test_python_requirement_agrees():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]
