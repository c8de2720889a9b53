"""Code hashes derived from each stage's import closure (rbl.codehash)."""

import shutil
from pathlib import Path

import pytest

from rbl import codehash

PACKAGE = Path(codehash.__file__).parent
STAGES = (
    "ingest",
    "split",
    "extract",
    "gather",
    "normalise",
    "train",
    "embed",
    "evaluate",
    "plot-embeddings",
    "plot-training",
    "summarise",
    "provenance",
    "demo",
    "corpus",
    "convert-authors",
)


@pytest.fixture
def package(tmp_path):
    """A copy of the package whose source a test may edit."""
    root = tmp_path / "rbl"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    codehash._parsed.cache_clear()
    yield root
    codehash._parsed.cache_clear()


def hashes(root: Path) -> dict[str, str]:
    codehash._parsed.cache_clear()
    return {stage: codehash.stage_hash(stage, root) for stage in STAGES}


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def changed(before: dict, after: dict) -> set[str]:
    return {stage for stage in before if before[stage] != after[stage]}


def test_every_workflow_stage_has_a_hash_and_the_rules_use_them():
    rules = "".join(p.read_text() for p in (PACKAGE.parents[1] / "workflow" / "rules").glob("*.smk"))
    for stage in STAGES:
        assert len(codehash.stage_hash(stage)) == 16
        assert f'code_version("{stage}")' in rules
    with pytest.raises(KeyError, match="no stage 'nonsense'"):
        codehash.stage_hash("nonsense")


def test_closures_hold_what_each_stage_imports():
    assert "data.py" in codehash.stage_modules("ingest") and "fingerprint.py" in codehash.stage_modules("ingest")
    assert "losses/rank.py" in codehash.stage_modules("train")
    assert "losses/_rank_cpu.py" in codehash.stage_modules("train")
    assert "vggish/frontend.py" in codehash.stage_modules("extract")
    assert "losses/rank.py" not in codehash.stage_modules("ingest")
    assert "plots.py" not in codehash.stage_modules("train")


def test_an_edit_reruns_exactly_the_stages_that_reach_it(package):
    before = hashes(package)
    edit(package / "losses" / "rank.py")
    assert changed(before, hashes(package)) == {"train", "embed"}

    before = hashes(package)
    edit(package / "plots.py")
    assert changed(before, hashes(package)) == {"plot-embeddings", "plot-training", "summarise"}

    before = hashes(package)
    edit(package / "split.py")
    assert changed(before, hashes(package)) == {"split"}


def test_stage_module_edits_count_for_their_own_stage_only(package):
    module = package / "stages" / "normalise.py"
    before = hashes(package)
    module.write_text(
        module.read_text().replace(
            "def run(args: argparse.Namespace) -> None:\n", "def run(args: argparse.Namespace) -> None:\n    pass\n"
        )
    )
    assert changed(before, hashes(package)) == {"normalise"}
    before = hashes(package)
    edit(package / "stages" / "options.py")  # the flags' types: the stages that declare flags with them
    assert changed(before, hashes(package)) == {"extract", "train", "plot-training", "summarise"}


def test_cli_edits_count_for_every_stage(package):
    cli = package / "cli.py"
    before = hashes(package)
    edit(cli)  # a comment changes no statement
    assert changed(before, hashes(package)) == set()
    cli.write_text(cli.read_text() + "\nLIMIT = 3\n")  # module-level code: every stage runs it
    assert changed(before, hashes(package)) == set(STAGES)
    before = hashes(package)
    cli.write_text(cli.read_text().replace("return 2\n", "return 3\n", 1))  # main's error handling
    assert changed(before, hashes(package)) == set(STAGES)


def test_a_stage_is_one_of_the_table(package):
    """A module of rbl/stages that the CLI's table does not name (the flags' types) is no stage."""
    with pytest.raises(KeyError, match="no stage 'options'"):
        codehash.stage_hash("options", package)
    assert set(codehash._table(codehash._parsed(package / "cli.py")[1])) == set(STAGES)


def test_feature_cache_key_follows_the_feature_code(package):
    before = codehash.modules_hash(["rbl.features"], package)
    edit(package / "vggish" / "frontend.py")
    codehash._parsed.cache_clear()
    after = codehash.modules_hash(["rbl.features"], package)
    assert after != before
    edit(package / "losses" / "rank.py")
    codehash._parsed.cache_clear()
    assert codehash.modules_hash(["rbl.features"], package) == after
