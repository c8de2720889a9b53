"""Tests for the synthetic hierarchical demo dataset (rbl.demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from rbl.demo import DEFAULT_SAMPLE_RATES, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_consistency(dataset):
    tax = pd.read_csv(dataset / "taxonomy.csv", dtype=str, keep_default_na=False)
    ann = pd.read_csv(dataset / "annotations.csv", dtype=str, keep_default_na=False)
    assert list(tax.columns) == ["family", "sound"]
    assert list(ann.columns) == ["file", "label", "group"]
    assert len(tax) == 12 and tax["sound"].is_unique
    assert tax["family"].nunique() == 3
    assert tax.groupby("family")["sound"].nunique().eq(4).all()
    assert len(ann) == 72 and ann["file"].is_unique

    families, leaves = set(tax["family"]), set(tax["sound"])
    assert families.isdisjoint(leaves)
    assert set(ann["label"]) <= families | leaves
    incomplete = ann[ann["label"].isin(families)]
    assert len(incomplete) == 2
    assert incomplete["label"].nunique() == 2  # from different families
    for _, row in incomplete.iterrows():
        assert row["file"].split("/")[0] == row["label"]

    # no stray files: the audio folder holds exactly the annotated clips
    on_disk = {p.relative_to(dataset / "audio").as_posix() for p in (dataset / "audio").rglob("*") if p.is_file()}
    assert on_disk == set(ann["file"])
    assert not list(dataset.rglob("*.tmp*"))

    rates, channels, durations, exts = set(), [], [], set()
    leaf_family = dict(zip(tax["sound"], tax["family"]))
    for _, row in ann.iterrows():
        path = dataset / "audio" / row["file"]
        assert path.is_file()
        family, sound, name = row["file"].split("/")
        assert leaf_family[sound] == family
        assert name.startswith(f"{family}_{sound}_")
        if row["label"] in leaves:
            assert row["label"] == sound
        assert row["group"].startswith(f"{sound}-src")
        info = sf.info(path)
        assert info.subtype == "PCM_16"
        rates.add(info.samplerate)
        channels.append(info.channels)
        durations.append(info.frames / info.samplerate)
        exts.add(path.suffix)
        data, _ = sf.read(path)
        peak = np.max(np.abs(data))
        assert 0.3 < peak <= 0.51
    assert rates == set(DEFAULT_SAMPLE_RATES)
    assert set(channels) == {1, 2}
    assert 0.15 <= channels.count(2) / len(channels) <= 0.35
    durations = np.array(durations)
    assert (durations < 0.96).sum() == 1
    assert (durations[durations >= 0.96] >= 1.0).all()
    assert durations.max() <= 3.01
    assert exts == {".wav", ".flac"}
    # groups come in pairs from one source
    assert ann.groupby("group").size().eq(2).all()


def test_stereo_channels_differ(dataset):
    stereo = [p for p in (dataset / "audio").rglob("*") if p.is_file() and sf.info(p).channels == 2]
    assert stereo
    for p in stereo:
        data, _ = sf.read(p)
        assert not np.array_equal(data[:, 0], data[:, 1])
        rms = np.sqrt(np.mean(data**2, axis=0))
        assert 0.5 < rms[1] / rms[0] < 2.0  # the same source, slightly different per channel


def test_deterministic(dataset, tmp_path):
    generate(tmp_path / "again")
    assert _files(dataset) == _files(tmp_path / "again")


def test_different_seed_gives_different_audio(dataset, tmp_path):
    generate(tmp_path / "other", seed=1)
    a, b = _files(dataset), _files(tmp_path / "other")
    assert a.keys() == b.keys()
    audio = [k for k in a if k.startswith("audio/")]
    assert all(a[k] != b[k] for k in audio)
    assert a["taxonomy.csv"] == b["taxonomy.csv"]


def test_overwrites_in_place_and_keeps_other_files(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    generate(out, clips_per_class=1, seed=3)
    first = _files(out)
    generate(out, clips_per_class=1, seed=3)
    assert _files(out) == first
    assert (out / "keep.txt").read_text() == "mine"
    ann = pd.read_csv(out / "annotations.csv")
    assert len(ann) == 12
    assert ann["label"].isin(["tonal", "noise", "pulse"]).sum() == 2


@pytest.mark.parametrize("bad", [{"clips_per_class": 0}, {"seed": -1}])
def test_rejects_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError):
        generate(tmp_path, **bad)


def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(50.0), hz_to_mel(sr / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down))


def _feature(path: Path, fb: np.ndarray, n_fft: int = 512, hop: int = 160) -> np.ndarray:
    data, sr = sf.read(path, always_2d=True)
    x = soxr.resample(data.mean(axis=1), sr, 16000)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    logmel = np.log(power @ fb.T + 1e-8)
    return np.concatenate([logmel.mean(axis=0), logmel.std(axis=0)])


def _loo_1nn_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    dist = np.linalg.norm(features[:, None, :] - features[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return float(np.mean(labels[np.argmin(dist, axis=1)] == labels))


def test_classes_are_separable(dataset):
    ann = pd.read_csv(dataset / "annotations.csv", dtype=str)
    fb = _mel_filterbank(16000, 512, 64)
    feats = np.stack([_feature(dataset / "audio" / f, fb) for f in ann["file"]])
    feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-9)
    # true classes from the path: incomplete labels say nothing about the leaf
    family = np.array([f.split("/")[0] for f in ann["file"]])
    sound = np.array([f.split("/")[1] for f in ann["file"]])
    fam_acc = _loo_1nn_accuracy(feats, family)
    fine_acc = _loo_1nn_accuracy(feats, sound)
    assert fam_acc > 0.8, f"leave-one-out 1-NN family accuracy {fam_acc:.3f} (chance 0.333)"
    assert fine_acc > 0.5, f"leave-one-out 1-NN sound accuracy {fine_acc:.3f} (chance 0.083)"
    # hierarchy: clips of different families are further apart than clips of different sounds
    # in one family, which are further apart than clips of one sound
    dist = np.linalg.norm(feats[:, None, :] - feats[None, :, :], axis=-1)
    same_family = family[:, None] == family[None, :]
    same_sound = (sound[:, None] == sound[None, :]) & ~np.eye(len(sound), dtype=bool)
    between_family = dist[~same_family].mean()
    within_family = dist[same_family & (sound[:, None] != sound[None, :])].mean()
    within_sound = dist[same_sound].mean()
    distances = (
        f"mean distance: between families {between_family:.2f}, "
        f"same family other sound {within_family:.2f}, same sound {within_sound:.2f}"
    )
    assert between_family > 1.1 * within_family, distances
    assert within_family > 1.5 * within_sound, distances
