"""The config schema: the default config is valid, mistakes are named, defaults live in one place."""

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from rbl.experiment import TrainSettings

from runs import snakemake

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_default_config_is_valid():
    jsonschema.validate(DEFAULT, SCHEMA)


def test_every_key_is_documented():
    readme = (REPO / "config/README.md").read_text()

    def keys(schema, prefix=""):
        for name, sub in schema.get("properties", {}).items():
            yield prefix + name
            yield from keys(sub, prefix + name + ".")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            yield from keys(extra, prefix + "<name>.")

    missing = [k for k in keys(SCHEMA) if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not document {missing}"


def test_schema_experiment_defaults_match_the_code():
    props = SCHEMA["properties"]["experiments"]["additionalProperties"]["properties"]
    for field in dataclasses.fields(TrainSettings):
        default = field.default if not isinstance(field.default, tuple) else list(field.default)
        if field.name == "loss":
            continue
        assert props[field.name]["default"] == default, field.name


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["features"].update(extractr="vggish"), "extractr"),
        (lambda c: c.update(seeds="three"), "seeds"),
        (lambda c: c["experiments"]["RbL"].update(lr=-1), "lr"),
    ],
)
def test_workflow_refuses_bad_config_naming_the_key(tmp_path, edit, message):
    config = yaml.safe_load(yaml.safe_dump(DEFAULT))
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n")
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
