"""The realistic benchmark corpora (rbl.corpora): tiny renders through the real tools.

Rendering needs fluidsynth, the FluidR3 GM soundfont and espeak-ng (scripts/install_corpus_tools.sh).
Without them these tests skip, saying why; with RBL_REQUIRE_CORPUS_TOOLS=1 (set by .ci/run) every
such reason fails them instead. The missing-tool errors and the sizes are checked without the tools.
"""

import os
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from rbl import corpora
from rbl.cli import main
from rbl.data import build_manifest, load_taxonomy, read_csv
from rbl.errors import InputError
from rbl.fingerprint import content_hashes
from rbl.split import make_splits

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("RBL_REQUIRE_CORPUS_TOOLS") == "1"

# Two families x two instruments; German and Dutch with two voices each, French with one.
INSTRUMENTS = ["violin", "cello", "trumpet", "tuba"]
VOICES = [
    v
    for lang, n in (("de", 2), ("nl", 2), ("fr", 1))
    for v in [v for _, language, v in corpora.speech_voices() if language == lang][:n]
]
CLIPS = 3


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (RBL_REQUIRE_CORPUS_TOOLS=1: this test has to run here)")
    pytest.skip(reason)


def need_instrument_tools():
    if shutil.which("fluidsynth") is None:
        unavailable("fluidsynth is not installed (scripts/install_corpus_tools.sh)")
    if not corpora.SOUNDFONT.is_file():
        unavailable(f"{corpora.SOUNDFONT} is missing (scripts/install_corpus_tools.sh)")


def need_speech_tools():
    if shutil.which("espeak-ng") is None:
        unavailable("espeak-ng is not installed (scripts/install_corpus_tools.sh)")


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def instruments(tmp_path_factory):
    need_instrument_tools()
    out = tmp_path_factory.mktemp("instruments")
    corpora.generate_instruments(out, CLIPS, seed=0, classes=INSTRUMENTS, progress=False)
    return out


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    need_speech_tools()
    out = tmp_path_factory.mktemp("speech")
    corpora.generate_speech(out, CLIPS, seed=0, classes=VOICES, progress=False)
    return out


def _check_corpus(out: Path, levels: list[str], leaves: list[str]) -> pd.DataFrame:
    taxonomy = load_taxonomy(out / "taxonomy.csv")
    assert list(taxonomy.levels) == levels
    table = read_csv(out / "taxonomy.csv")
    assert list(table[levels[-1]]) == leaves  # one row per leaf, in the corpus's order
    annotations = read_csv(out / "annotations.csv")
    assert list(annotations.columns) == ["file", "label"]
    # The repository's own ingest validation: labels, paths, files.
    manifest = build_manifest(annotations, taxonomy, out / "audio", str(out / "annotations.csv"))
    assert len(manifest) == len(leaves) * CLIPS
    assert manifest["label"].value_counts().to_dict() == {leaf: CLIPS for leaf in leaves}
    assert (manifest[levels[-1]] == manifest["label"]).all()  # labels are the leaves themselves
    on_disk = {p.relative_to(out / "audio").as_posix() for p in (out / "audio").rglob("*") if p.is_file()}
    assert on_disk == set(manifest["file"])
    assert not list(out.rglob("*.tmp*"))
    rows = []
    for path in manifest["path"]:
        info = sf.info(path)
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, corpora.SAMPLE_RATE)
        x, _ = sf.read(path)
        assert np.isfinite(x).all()
        peak, rms = np.abs(x).max(), np.sqrt(np.mean(x**2))
        assert peak < 0.75, f"{path}: clipped or too loud (peak {peak:.3f})"
        assert rms > 1e-4, f"{path}: silent"
        rows.append({"seconds": len(x) / corpora.SAMPLE_RATE, "peak_db": 20 * np.log10(peak)})
    stats = pd.DataFrame(rows)
    assert stats["seconds"].nunique() == len(stats)  # lengths vary
    assert stats["seconds"].min() >= 0.5
    assert stats["peak_db"].min() >= -27.5 and stats["peak_db"].max() <= -2.5
    assert stats["peak_db"].max() - stats["peak_db"].min() > 6  # levels vary
    return manifest


def test_instruments_corpus_is_valid_and_varied(instruments):
    manifest = _check_corpus(instruments, ["family", "instrument"], INSTRUMENTS)
    assert set(manifest["family"]) == {"strings", "brass"}
    seconds = [sf.info(p).duration for p in manifest["path"]]
    assert 1.0 <= min(seconds) and max(seconds) <= 4.0


def test_speech_corpus_is_valid_and_varied(speech):
    manifest = _check_corpus(speech, ["family", "language", "voice"], VOICES)
    assert set(manifest["language"]) == {"de", "nl", "fr"}
    assert set(manifest["family"]) == {"germanic", "romance"}


def test_same_seed_same_files(instruments, speech, tmp_path):
    corpora.generate_instruments(tmp_path / "i", CLIPS, seed=0, classes=INSTRUMENTS, progress=False)
    corpora.generate_speech(tmp_path / "s", CLIPS, seed=0, classes=VOICES, progress=False)
    assert files(tmp_path / "i") == files(instruments)
    assert files(tmp_path / "s") == files(speech)
    corpora.generate_speech(tmp_path / "other", CLIPS, seed=1, classes=VOICES, progress=False)
    other = files(tmp_path / "other")
    same = [k for k, v in files(speech).items() if k.endswith(".wav") and other.get(k) == v]
    assert not same, f"seed 1 repeated seed 0's clips {same}"


def test_unseen_voices_are_whole_voices_of_seen_languages(speech):
    """unseen_per_parent=1 (config/speech.yaml) holds out one voice per language, never a language."""
    taxonomy = load_taxonomy(speech / "taxonomy.csv")
    manifest = build_manifest(read_csv(speech / "annotations.csv"), taxonomy, speech / "audio", "annotations.csv")
    manifest["sha256"] = content_hashes(list(manifest["path"]), {}, progress=False)[0]
    splits = make_splits(manifest, list(taxonomy.levels), 1, {"train": 0.6, "val": 0.2, "test_seen": 0.2}, seed=0)
    frame = manifest.assign(split=splits["split"].to_numpy())
    unseen = frame[frame["split"] == "test_unseen"]
    assert set(unseen["language"]) == {"de", "nl"}  # fr has one voice here: nothing to hold out
    for voice, rows in frame.groupby("voice"):
        assert rows["split"].eq("test_unseen").all() or not rows["split"].eq("test_unseen").any(), voice
    trained_languages = set(frame.loc[frame["split"] == "train", "language"])
    assert set(unseen["language"]) <= trained_languages


def test_cli_writes_a_corpus(tmp_path):
    need_speech_tools()
    code = main(
        ["--quiet", "corpus", "--kind", "speech", "--out", str(tmp_path / "s"), "--clips-per-class", "1", "--seed", "3"]
    )
    assert code == 0
    annotations = read_csv(tmp_path / "s" / "annotations.csv")
    assert len(annotations) == len(corpora.speech_voices())
    assert (tmp_path / "s" / "corpus.json").is_file()


# --- without the tools -------------------------------------------------------------------------


def test_missing_program_names_it_and_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"espeak-ng: program not found.*scripts/install_corpus_tools\.sh"):
        corpora.generate_speech(tmp_path / "s", 2, classes=VOICES[:1], progress=False)
    with pytest.raises(InputError, match=r"fluidsynth: program not found.*scripts/install_corpus_tools\.sh"):
        corpora.generate_instruments(tmp_path / "i", 2, classes=INSTRUMENTS[:1], progress=False)
    assert (
        main(["corpus", "--kind", "instruments", "--out", str(tmp_path / "c"), "--clips-per-class", "2", "--seed", "0"])
        == 2
    )
    err = capsys.readouterr().err
    assert "error: fluidsynth: program not found" in err and "scripts/install_corpus_tools.sh" in err
    assert not (tmp_path / "c").exists()


def test_missing_soundfont_names_it(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    missing = tmp_path / "FluidR3_GM.sf2"
    with pytest.raises(
        InputError,
        match=r"FluidR3_GM\.sf2: General MIDI soundfont not found.*fluid-soundfont-gm"
        r".*scripts/install_corpus_tools\.sh",
    ):
        corpora.generate_instruments(tmp_path / "i", 2, classes=INSTRUMENTS[:1], soundfont=missing, progress=False)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown class"):
        corpora.generate_speech(tmp_path, 2, classes=["xx_m1"], progress=False)
    with pytest.raises(InputError, match="clips_per_class"):
        corpora.generate_instruments(tmp_path, 0, progress=False)


def test_default_sizes_and_configs():
    """The defaults give >= 500 clips each; the configs validate and keep >= 4 seen leaves per parent."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    families = corpora.INSTRUMENT_FAMILIES
    leaves = [i.name for insts in families.values() for i in insts]
    assert len(leaves) == len(set(leaves)) == 70
    assert all(0 <= i.program < 128 and 0 <= i.low < i.high <= 127 for insts in families.values() for i in insts)
    voices = [v for _, _, v in corpora.speech_voices()]
    assert len(voices) == len(set(voices)) == 36
    # Every variant serves three languages in three different families.
    by_variant: dict[str, set[str]] = {}
    for family, _, voice in corpora.speech_voices():
        by_variant.setdefault(voice.split("_")[1], set()).add(family)
    assert len(by_variant) == 12 and all(len(f) == 3 for f in by_variant.values())
    for name, n_leaves in (("instruments", len(leaves)), ("speech", len(voices))):
        config = yaml.safe_load((REPO / f"config/{name}.yaml").read_text())
        jsonschema.validate(config, schema)
        assert config["corpus"]["generate"] and config["corpus"]["kind"] == name
        assert n_leaves * config["corpus"]["clips_per_class"] >= 500
        assert config["corpus"]["clips_per_class"] == corpora.DEFAULT_CLIPS_PER_CLASS[name]
        assert config["dataset"]["audio_root"] == f"{config['corpus']['out_dir']}/audio"
    assert yaml.safe_load((REPO / "config/instruments.yaml").read_text())["split"]["unseen_per_parent"] == 2
    assert min(len(insts) for insts in families.values()) - 2 >= 4
