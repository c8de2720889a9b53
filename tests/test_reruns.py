"""Reruns on a user's dataset see every content change (whatever the file times say) and nothing
else; a bad config or bad annotations are reported before any job runs, in a few lines."""

import os
import shutil

import pandas as pd
import pytest

from rbl.demo import generate
from rbl.feature_settings import WEIGHT_FILES

from runs import load_test_config, planned_rules, snakemake, write_config

MANIFEST = "results/user/manifest.csv"


def user_config() -> dict:
    """.test/config/user.yaml: data the user already has (no generator rule), InitEmb only."""
    return load_test_config("user.yaml")


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("user")
    generate(workdir / "data", clips_per_class=4, seed=3)
    write_config(workdir, user_config())
    out = snakemake(workdir, MANIFEST)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def clips(workdir):
    annotations = pd.read_csv(workdir / "data/annotations.csv")
    return [workdir / "data/audio" / f for f in annotations["file"]]


def sha_of(workdir, clip) -> str:
    manifest = pd.read_csv(workdir / MANIFEST)
    rel = clip.relative_to(workdir / "data/audio").as_posix()
    return manifest.loc[manifest["file"] == rel, "sha256"].item()


def test_content_changes_rerun_and_touches_do_not(user):
    first, second = clips(user)[:2]
    assert (
        planned_rules(user)
        - {
            "split",
            "extract",
            "gather_features",
            "normalise",
            "embed",
            "evaluate",
            "plot_embeddings",
            "summarise",
            "provenance",
        }
        == set()
    )
    # touched: new times, same bytes
    os.utime(first, ns=(4 * 10**18, 4 * 10**18))
    out = snakemake(user, MANIFEST, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
    # replaced by other content with an OLDER modification time (cp -p, rsync -a)
    old_sha = sha_of(user, first)
    saved = user / "saved.wav"
    shutil.copy2(second, saved)
    os.utime(saved, ns=(10**18, 10**18))
    shutil.copy2(saved, first)
    assert os.stat(first).st_mtime_ns == 10**18
    out = snakemake(user, MANIFEST)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ingest" in out.stderr and sha_of(user, first) == sha_of(user, second) != old_sha
    out = snakemake(user, MANIFEST, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_added_and_removed_clips_rerun(user):
    annotations = user / "data/annotations.csv"
    text = annotations.read_text()
    rows = text.splitlines()
    new = user / "data/audio/extra{1}.wav"  # braces: not a wildcard, clips are no inputs
    shutil.copy2(clips(user)[0], new)
    annotations.write_text(text + f"extra{{1}}.wav,{rows[1].split(',')[1]},extra\n")
    out = snakemake(user, MANIFEST)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "extra{1}.wav" in set(pd.read_csv(user / MANIFEST)["file"])
    annotations.write_text(text)
    new.unlink()
    assert "ingest" in planned_rules(user)
    assert snakemake(user, MANIFEST).returncode == 0
    assert len(pd.read_csv(user / MANIFEST)) == len(rows) - 1


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"file,label\nt\xe9st.wav,hiss\n", "not UTF-8 text"),
        (b"File,Label\nx.wav,hiss\n", "no 'file' column"),
        (b"file;label\nx.wav;hiss\n", "semicolon-separated"),
        (b"", "empty file"),
        (b"file,label\n/etc/passwd,hiss\n", "line 2: '/etc/passwd' is an absolute path"),
        (b"file,label\n../../x.wav,hiss\n", "line 2: '../../x.wav' points outside the root folder"),
    ],
)
def test_bad_annotations_are_reported_before_any_job(tmp_path, content, expected):
    generate(tmp_path / "data", clips_per_class=2, seed=0)
    (tmp_path / "data/annotations.csv").write_bytes(content)
    write_config(tmp_path, user_config())
    out = snakemake(tmp_path, "-n")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "data/annotations.csv" in text and expected in text, text
    assert "Traceback" not in text and "InputFunctionException" not in text
    assert len(text.splitlines()) <= 30, text


def test_nul_byte_in_annotations_is_reported(tmp_path):
    generate(tmp_path / "data", clips_per_class=2, seed=0)
    (tmp_path / "data/annotations.csv").write_bytes(b"file,label\nx\x00.wav,hiss\n")
    write_config(tmp_path, user_config())
    out = snakemake(tmp_path, "-n")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text
    assert "data/annotations.csv line 2: the 'file' cell" in text and "control character '\\x00'" in text, text


def test_bad_config_names_the_key_in_a_few_lines(tmp_path):
    config = user_config()
    config["train"]["collapse_spread"] = -3
    del config["features"]["vggish"]
    write_config(tmp_path, config)
    out = snakemake(tmp_path, "-n")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "key features: 'vggish' is a required property" in text or "key train.collapse_spread" in text, text
    assert "config.yaml" in text and len(text.splitlines()) <= 10, text


def test_weights_put_in_place_rerun_extraction(user):
    """extractor auto fell back to logmel (no weights, download off); weights put there later change
    what auto chooses, so extraction is planned again, and only then."""
    features = "results/user/features/auto.npy"
    assert snakemake(user, features).returncode == 0
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(user, features, "-n"))
    weights = user / "weights"
    weights.mkdir(exist_ok=True)
    for name, _ in WEIGHT_FILES:
        (weights / name).write_bytes(b"weights of my own")
    out = snakemake(user, features, "-n")
    assert "rule extract" in out.stdout + out.stderr, out.stdout[-2000:]
    for name, _ in WEIGHT_FILES:
        (weights / name).unlink()
    out = snakemake(user, features, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
