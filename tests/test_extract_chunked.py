"""Extraction in pieces equals extraction of the whole clip: decoding in blocks, framing in pieces
with their overlap, pooling with running sums, for both extractors and clip lengths around every
boundary (the piece size is lowered so that short clips cross several pieces)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import soundfile as sf
import soxr
import torch
from whole_clip import clip_examples, clip_logmel_stats  # benchmarks/: the whole-clip reference

from rbl import audio, features
from rbl.cache import DIMS
from rbl.extraction import ExtractSettings, extract
from rbl.logmel import (
    EXAMPLE_FRAMES,
    EXAMPLE_HOP_SAMPLES,
    EXAMPLE_SAMPLES,
    FRAME_OVERLAP,
    HOP_SAMPLES,
    examples_in,
    frame_pieces,
    frames_in,
)
from rbl.vggish import load_extractor
from rbl.vggish.frontend import LogMelFrontend, pieces_logmel
from rbl.weight_files import CNN_FILENAME, PCA_FILENAME

from test_vggish_model import random_pca, random_state_dict

RATE = 16000
SMALL_PIECE = 2 * EXAMPLE_FRAMES  # 2 examples, 192 frames: a piece spans 30,960 samples
SPAN = HOP_SAMPLES * SMALL_PIECE + FRAME_OVERLAP


def noise(n: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed + n)
    t = np.arange(n)[:, None] / RATE
    x = 0.3 * np.sin(2 * np.pi * (300.0 + 50 * seed) * t) + 0.1 * rng.standard_normal((n, channels))
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def blocks_of(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[k : k + size] for k in range(0, len(x), size)]


# Clip lengths around the boundaries of a SMALL_PIECE piece: shorter than one example, exactly one,
# a piece exactly, a piece plus too little for one more frame / example, plus exactly one more, and
# several pieces with a ragged end.
LENGTHS = [
    8000,
    EXAMPLE_SAMPLES,
    EXAMPLE_SAMPLES + 1,
    SPAN - 1,
    SPAN,
    SPAN + HOP_SAMPLES - 1,
    SPAN + HOP_SAMPLES,
    SPAN + EXAMPLE_HOP_SAMPLES - 1,
    SPAN + EXAMPLE_HOP_SAMPLES,
    3 * SPAN + 12345,
]


# ---- framing in pieces ----


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("block", [7919, 100_000])
def test_pieces_frame_exactly_as_the_whole_clip_logmel(n, block):
    x = noise(n)
    pieces = list(frame_pieces(blocks_of(x, block), SMALL_PIECE, unit=1))
    assert all(len(p) <= SPAN for p, _ in pieces)
    ours = pieces_logmel([torch.from_numpy(p) for p, _ in pieces], [k for _, k in pieces])
    whole = LogMelFrontend().clip_logmel([torch.from_numpy(x)], [frames_in(n)])
    assert ours.shape == whole.shape == (frames_in(n), 64)
    # Every frame is computed from the same 400 samples by the same operations; only the batch
    # size of the FFT and mel product differ, which may move a value by float32 rounding.
    torch.testing.assert_close(ours, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", LENGTHS)
def test_pieces_frame_exactly_as_the_whole_clip_vggish(n):
    x = noise(n, seed=1)
    pieces = list(frame_pieces(blocks_of(x, 7919), SMALL_PIECE, unit=EXAMPLE_FRAMES))
    assert all(k % EXAMPLE_FRAMES == 0 and k <= SMALL_PIECE for _, k in pieces)
    ours = pieces_logmel([torch.from_numpy(p) for p, _ in pieces], [k for _, k in pieces])
    whole, _ = clip_examples([torch.from_numpy(x)])
    assert len(whole) == examples_in(n) == len(ours) // EXAMPLE_FRAMES
    torch.testing.assert_close(ours.view(-1, EXAMPLE_FRAMES, 64), whole, rtol=1e-6, atol=1e-6)


def test_pieces_count_and_size():
    x = noise(3 * SPAN + 12345)
    pieces = list(frame_pieces(blocks_of(x, 50_000), SMALL_PIECE, unit=1))
    # A piece every HOP * SMALL_PIECE samples, each carrying the 240-sample overlap of its last frame.
    assert [len(p) for p, _ in pieces[:-1]] == [SPAN] * (len(pieces) - 1)
    assert sum(k for _, k in pieces) == frames_in(len(x))
    np.testing.assert_array_equal(pieces[1][0], x[HOP_SAMPLES * SMALL_PIECE : HOP_SAMPLES * SMALL_PIECE + SPAN])
    with pytest.raises(ValueError, match="unit"):
        next(frame_pieces([x], 100, unit=EXAMPLE_FRAMES))


# ---- decoding in blocks ----


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (8000, 1)])
def test_decoding_in_blocks_equals_the_one_shot_decode(tmp_path, rate, channels):
    path = tmp_path / "clip.wav"
    sf.write(path, noise(rate * 7 + 123, channels=channels), rate, subtype="PCM_16")
    blocks = list(audio.stream(path, block_bytes=4 * channels * 10_007))
    assert len(blocks) > 5
    samples, got_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float32)
    one_shot = mono if got_rate == RATE else soxr.resample(mono, got_rate, RATE, quality="HQ")
    # soxr keeps its filter state across blocks: the stream is the one-shot output, sample for sample.
    np.testing.assert_array_equal(np.concatenate(blocks), one_shot)
    np.testing.assert_array_equal(audio.load(path), one_shot)


# ---- whole extraction: pieces pooled with running sums against the whole-clip path ----


def write_clips(folder, specs) -> tuple[list[str], list[str]]:
    """WAV files of (samples, rate, channels); their paths and distinct made-up digests."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (n, rate, channels) in enumerate(specs):
        path = folder / f"clip{k}.wav"
        sf.write(path, noise(n, seed=k, channels=channels), rate, subtype="PCM_16")
        paths.append(str(path))
    return paths, [f"{k:064x}" for k in range(len(paths))]


SPECS = [(n, RATE, 1) for n in LENGTHS] + [(44100 * 5 + 77, 44100, 2)]


def whole_clip(path: str) -> np.ndarray:
    """The one-shot decode: the whole file read, averaged to mono and resampled at once."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float32)
    return mono if rate == RATE else soxr.resample(mono, rate, RATE, quality="HQ").astype(np.float32)


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 2 examples and frontend calls of at most 3 such pieces, so short clips cross boundaries."""
    monkeypatch.setattr(features, "PIECE_FRAMES", SMALL_PIECE)
    monkeypatch.setattr(features, "GROUP_SAMPLES", 3 * SPAN)


@pytest.mark.parametrize("batch", [1, 4])
def test_logmel_in_pieces_equals_the_whole_clip(tmp_path, small_pieces, batch):
    paths, digests = write_clips(tmp_path / "wav", SPECS)
    settings = ExtractSettings(extractor="logmel", batch_clips=batch, workers=2)
    feats, info = extract(paths, digests, settings, tmp_path / "cache", progress=False)
    assert info["computed"] == len(paths) and info["skipped"] == 0
    for path, row in zip(paths, feats):
        wave = whole_clip(path)
        frames = LogMelFrontend().clip_logmel([torch.from_numpy(wave)], [frames_in(len(wave))]).double().numpy()
        exact = brute_force_stats(frames)
        # The same float32 frames pooled in float64 (Chan's merge of per-piece mean and squared
        # deviations against two-pass, differences across piece boundaries from the carried frame):
        # equal up to the final cast to float32 (values up to ~10).
        np.testing.assert_allclose(row, exact, rtol=1e-6, atol=1e-6)
        # The whole-clip path of before sums the frames in float32: up to ~1e-5 from the exact figure
        # over these 6,000 frames.
        np.testing.assert_allclose(row, clip_logmel_stats([torch.from_numpy(wave)])[0].numpy(), rtol=0, atol=5e-5)


def brute_force_stats(frames: np.ndarray) -> np.ndarray:
    """The logmel vector by its definition, in float64: per band the mean and std of the frames, then
    the mean |d_t| and std of d_t = L[t+1] - L[t] over the clip's consecutive frames (0, 0 for one
    frame); then the same four of each frame's first 20 MFCCs (scipy's orthonormal DCT-II)."""
    frames = np.asarray(frames, dtype=np.float64)

    def four(values: np.ndarray) -> list[np.ndarray]:
        columns = values.shape[1]
        deltas = np.array([values[t + 1] - values[t] for t in range(len(values) - 1)]).reshape(-1, columns)
        if len(deltas):
            abs_mean, std = np.abs(deltas).mean(axis=0), deltas.std(axis=0)
        else:
            abs_mean, std = np.zeros(columns), np.zeros(columns)
        return [values.mean(axis=0), values.std(axis=0), abs_mean, std]

    cepstra = scipy.fft.dct(frames, type=2, norm="ortho", axis=1)[:, :20]
    return np.concatenate(four(frames) + four(cepstra))


def real_frames(n_samples: int, seed: int) -> np.ndarray:
    """Log-mel frames (float32, as extraction pools them) of a clip of n samples, framed whole (no padding)."""
    wave = torch.from_numpy(noise(n_samples, seed=seed))
    return LogMelFrontend().clip_logmel([wave], [1 + (n_samples - 400) // HOP_SAMPLES]).numpy()


def cut(frames: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive pieces of the given sizes (the last takes the rest)."""
    bounds = np.cumsum(sizes)
    assert bounds[-1] < len(frames)
    return np.split(frames, bounds)


def test_logmel_pooling_equals_a_brute_force_reference():
    """Pooling in pieces of any size gives the four statistics of the whole clip: the pieces of three
    clips interleaved (as groups of a batch hand them over), with pieces of one frame, one frame
    short of and past a boundary, and a clip of one frame (delta statistics 0)."""
    long_frames = real_frames(400 + 160 * 999, seed=3)  # 1000 frames
    assert long_frames.shape == (1000, 64)
    single = real_frames(400, seed=4)  # one frame: the 400 samples of its window
    assert single.shape == (1, 64)
    short = real_frames(400 + 160 * 9, seed=5)  # 10 frames
    clips = {
        0: cut(long_frames, [1, 1, 191, 192, 1, 300]),
        1: [single],
        2: cut(short, [1] * 9),  # every frame a piece
        3: cut(long_frames, [999]),  # last piece of one frame
        4: [long_frames],
    }
    pooling = features._Pooling("logmel")
    rows = {}
    for step in range(max(len(p) for p in clips.values())):
        for clip, pieces in clips.items():
            if step < len(pieces):
                pooling.add(clip, pieces[step])
                if step == len(pieces) - 1:
                    rows[clip] = pooling.pop(clip)
    assert not pooling.frames and not pooling.deltas and not pooling.last
    for clip, pieces in clips.items():
        whole = np.concatenate(pieces)
        row = rows[clip]
        assert row.shape == (DIMS["logmel"],) == (336,) and row.dtype == np.float32
        np.testing.assert_allclose(row, brute_force_stats(whole), rtol=1e-6, atol=1e-6)
    # one frame: the delta statistics of the bands (128:256) and of the cepstra (296:336) are 0
    np.testing.assert_array_equal(rows[1][128:256], np.zeros(128, np.float32))
    np.testing.assert_array_equal(rows[1][296:], np.zeros(40, np.float32))
    assert (rows[4][128:256] > 0).all() and (rows[4][296:] > 0).all()


def test_logmel_pooling_of_a_dropped_clip_starts_afresh():
    """A clip refused mid-way (drop) leaves no frame behind for a later clip under the same index."""
    frames = real_frames(400 + 160 * 99, seed=6)
    pooling = features._Pooling("logmel")
    pooling.add(0, frames[:50] + 5)
    pooling.drop(0)
    pooling.add(0, frames[:30])
    pooling.add(0, frames[30:])
    np.testing.assert_allclose(pooling.pop(0), brute_force_stats(frames), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Generated VGGish weights of the official keys and shapes (no real weights can be downloaded here)."""
    folder = tmp_path_factory.mktemp("vggish_weights")
    torch.save(random_state_dict(), folder / CNN_FILENAME)
    torch.save(random_pca(), folder / PCA_FILENAME)
    return folder


def test_vggish_in_pieces_equals_the_whole_clip(tmp_path, small_pieces, weights_dir, monkeypatch):
    """Unquantised embeddings: quantisation would turn a last-bit difference at a .5 tie into a full step."""
    import rbl.vggish.weights as weights

    def unquantised(*args, **kwargs):
        model = load_extractor(*args, **kwargs)
        model.postprocessor.quantize = False
        return model

    monkeypatch.setattr(weights, "load_extractor", unquantised)
    paths, digests = write_clips(tmp_path / "wav", SPECS)
    settings = ExtractSettings(
        extractor="vggish", weights_dir=str(weights_dir), download=False, verify=False, batch_clips=3, workers=2
    )
    feats, info = extract(paths, digests, settings, tmp_path / "cache", progress=False)
    assert info["extractor"] == "vggish" and info["computed"] == len(paths)
    model = unquantised(weights_dir, download=False, verify=False)
    with torch.inference_mode():
        for path, row in zip(paths, feats):
            examples, _ = clip_examples([torch.from_numpy(whole_clip(path))])
            exact = model(examples).double().mean(dim=0).numpy()
            # The CNN sees the same examples in calls of other sizes (pieces of 2 examples against
            # 64 per call), whose float32 sums oneDNN may order differently: a few 1e-6 of the
            # embedding's scale (PCA outputs up to ~30 here). A misframed example moves the mean
            # by about scale / examples, 1e-2 of it or more for these clips.
            scale = np.abs(exact).max()
            np.testing.assert_allclose(row, exact, rtol=0, atol=1e-5 * scale)
    assert len(np.unique(feats.round(3), axis=0)) == len(paths)


def test_default_pieces_on_a_clip_longer_than_one(tmp_path):
    """The real piece and group sizes: a 130 s clip (3 pieces) with short ones in the same batch."""
    n = 130 * RATE + 321
    assert n > 2 * HOP_SAMPLES * features.PIECE_FRAMES
    paths, digests = write_clips(tmp_path / "wav", [(8000, RATE, 1), (n, RATE, 1), (3 * RATE, RATE, 1)])
    feats, _ = extract(
        paths, digests, ExtractSettings(extractor="logmel", batch_clips=32), tmp_path / "c", progress=False
    )
    for path, row in zip(paths, feats):
        np.testing.assert_allclose(
            row, clip_logmel_stats([torch.from_numpy(whole_clip(path))])[0].numpy(), rtol=0, atol=5e-5
        )
