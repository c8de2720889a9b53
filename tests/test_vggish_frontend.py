"""The torch VGGish frontend against a plain numpy port of the published mel_features / vggish_input
(benchmarks/torchvggish_style.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from whole_clip import clip_examples, clip_logmel_stats  # benchmarks/: the reference

from rbl import logmel
from rbl.vggish import (
    CPU_CNN_BATCH,
    EXAMPLE_FRAMES,
    EXAMPLE_HOP_SAMPLES,
    EXAMPLE_SAMPLES,
    N_MELS,
    SAMPLE_RATE,
    LogMelFrontend,
    mel_matrix,
)
from rbl.vggish.frontend import periodic_hann

import torchvggish_style  # benchmarks/ (see conftest.py)

# The reference: the numpy port of tensorflow/models research/audioset/vggish mel_features.py and
# vggish_input.py that benchmarks/torchvggish_style.py also runs as its per-file baseline.
ref_spectrogram_to_mel_matrix = torchvggish_style.spectrogram_to_mel_matrix
ref_log_mel = torchvggish_style.log_mel_16k


def ref_waveform_to_examples(data: np.ndarray) -> np.ndarray:
    return torchvggish_style.waveform_to_examples(data, SAMPLE_RATE)


# ---- signals ----

LENGTHS = [EXAMPLE_SAMPLES, EXAMPLE_SAMPLES + 1, 2 * EXAMPLE_HOP_SAMPLES + EXAMPLE_SAMPLES - 1, 40000]


def signal(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """float32 test audio: uniform noise, or a sinusoid mix with a little noise."""
    rng = np.random.default_rng(seed + n)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "noise":
        x = rng.uniform(-1.0, 1.0, n)
    else:
        x = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 3001.7 * t) + 1e-3 * rng.standard_normal(n)
    return x.astype(np.float32)


def pure_tone(n: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


def assert_float32_close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Log-mel from a float32 spectrum vs the float64 reference.

    Strict in the log domain (1e-4) wherever a band holds real energy; in the mel domain the error is
    bounded by float32 rounding of the frame's spectrum (1e-6 of the frame's largest band), which is
    what decides near-empty bands (e.g. far from a pure tone, where mel + 0.01 is close to 0.01).
    """
    mel_ours, mel_ref = np.exp(ours.astype(np.float64)), np.exp(ref)
    peak = mel_ref.max(axis=-1, keepdims=True)
    assert np.all(np.abs(mel_ours - mel_ref) <= 1e-6 * peak + 1e-7)
    energetic = mel_ref > 1e-3 * peak
    np.testing.assert_allclose(ours[energetic], ref[energetic], atol=1e-4, rtol=0)


# ---- tests ----


def test_mel_matrix_matches_reference():
    ref = ref_spectrogram_to_mel_matrix(64, 257, 16000, 125.0, 7500.0)
    ours = mel_matrix()
    assert ours.shape == (257, 64) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mel_matrix(dtype=torch.float64).numpy(), ref, atol=1e-12, rtol=0)
    assert torch.all(ours[0] == 0)


@pytest.mark.parametrize("kind", ["noise", "tones"])
@pytest.mark.parametrize("n", LENGTHS + [400, 559, 560])
def test_logmel_frames_match_reference(kind, n):
    x = signal(kind, n)
    ref = ref_log_mel(x.astype(np.float64))
    ours = LogMelFrontend()(torch.from_numpy(x)[None])[0].numpy()
    assert ours.shape == ref.shape == (1 + (n - 400) // 160, N_MELS)
    assert_float32_close(ours, ref)
    if kind == "noise":  # broadband: every band is energetic, so plain 1e-4 holds everywhere
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["noise", "tones"])
@pytest.mark.parametrize("n", LENGTHS + [400, 559, 560])
def test_numpy_logmel_frames_match_reference_and_the_torch_frontend(kind, n):
    """rbl.logmel (the `logmel` extractor's frames, numpy) against the reference and the torch frontend."""
    x = signal(kind, n)
    ref = ref_log_mel(x.astype(np.float64))
    frames = 1 + (n - 400) // 160
    ours = logmel.logmel_frames(x, frames)
    assert ours.shape == ref.shape == (frames, N_MELS) and ours.dtype == np.float32
    assert_float32_close(ours, ref)
    assert_float32_close(ours, LogMelFrontend(dtype=torch.float64)(torch.from_numpy(x).double()[None])[0].numpy())
    # fewer frames than the samples hold: the first ones; more: the end zero-padded, as clip_logmel does
    fewer = max(1, frames - 2)
    np.testing.assert_allclose(logmel.logmel_frames(x, fewer), ours[:fewer], atol=1e-5, rtol=0)
    padded = LogMelFrontend().clip_logmel([torch.from_numpy(x)], [frames + 3]).numpy()
    assert_float32_close(logmel.logmel_frames(x, frames + 3), padded.astype(np.float64))


def test_numpy_tables_are_the_torch_frontends():
    np.testing.assert_array_equal(logmel.mel_matrix(), mel_matrix(dtype=torch.float64).numpy())
    ref = ref_spectrogram_to_mel_matrix(64, 257, 16000, 125.0, 7500.0)
    np.testing.assert_allclose(logmel.mel_matrix(), ref, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(logmel.periodic_hann(), periodic_hann(dtype=torch.float64).numpy())
    with pytest.raises(ValueError, match="1-D"):
        logmel.logmel_frames(np.zeros((2, 800), np.float32), 1)


def test_piece_size_is_one_cpu_cnn_call():
    """features.PIECE_FRAMES is written out (importing rbl.vggish would import torch): it must stay one CNN call."""
    from rbl import features

    assert features.PIECE_FRAMES == CPU_CNN_BATCH * EXAMPLE_FRAMES


def test_pure_tone_float64_frontend_is_exact_and_float32_within_rounding():
    x = pure_tone(40000)
    ref = ref_log_mel(x.astype(np.float64))
    ours64 = LogMelFrontend(dtype=torch.float64)(torch.from_numpy(x).double()[None])[0].numpy()
    np.testing.assert_allclose(ours64, ref, atol=1e-9, rtol=0)
    assert_float32_close(LogMelFrontend()(torch.from_numpy(x)[None])[0].numpy(), ref)


def test_batched_frontend_equals_per_row():
    rows = np.stack([signal("noise", 20000, seed=s) for s in range(3)])
    batched = LogMelFrontend()(torch.from_numpy(rows))
    assert batched.shape == (3, 1 + (20000 - 400) // 160, N_MELS)
    for i, row in enumerate(rows):
        torch.testing.assert_close(batched[i], LogMelFrontend()(torch.from_numpy(row)[None])[0])


def test_frontend_buffers_are_not_persistent():
    assert LogMelFrontend().state_dict() == {}


def expected_count(n: int) -> int:
    return 1 + (n - EXAMPLE_SAMPLES) // EXAMPLE_HOP_SAMPLES if n >= EXAMPLE_SAMPLES else 1


@pytest.mark.parametrize("kind", ["noise", "tones"])
def test_clip_examples_match_reference_framing(kind):
    lengths = LENGTHS + [8000]
    clips = [signal(kind, n) for n in lengths]
    examples, clip_index = clip_examples([torch.from_numpy(c) for c in clips])
    counts = [expected_count(n) for n in lengths]
    assert examples.shape == (sum(counts), EXAMPLE_FRAMES, N_MELS)
    assert clip_index.dtype == torch.long
    assert clip_index.tolist() == [i for i, c in enumerate(counts) for _ in range(c)]
    for i, clip in enumerate(clips):
        padded = np.pad(clip, (0, max(0, EXAMPLE_SAMPLES - len(clip))))
        ref = ref_waveform_to_examples(padded.astype(np.float64))
        assert ref.shape == (counts[i], EXAMPLE_FRAMES, N_MELS)
        assert_float32_close(examples[clip_index == i].numpy(), ref)


def test_clip_examples_counts():
    assert [expected_count(n) for n in (1, 15599, 15600, 15601, 30959, 30960, 46320)] == [1, 1, 1, 1, 1, 2, 3]
    lengths = [1, 15599, 15600, 30959, 30960, 46320]
    _, clip_index = clip_examples([torch.zeros(n) for n in lengths])
    assert torch.bincount(clip_index).tolist() == [expected_count(n) for n in lengths]


def test_clip_examples_empty_list():
    examples, clip_index = clip_examples([])
    assert examples.shape == (0, EXAMPLE_FRAMES, N_MELS) and clip_index.shape == (0,)


def test_clip_logmel_stats_match_reference():
    lengths = [8000, EXAMPLE_SAMPLES, 40000, 2 * EXAMPLE_HOP_SAMPLES + EXAMPLE_SAMPLES - 1]
    clips = [signal("noise", n) for n in lengths]
    stats = clip_logmel_stats([torch.from_numpy(c) for c in clips])
    assert stats.shape == (len(clips), 4 * (N_MELS + 20))
    for row, clip in zip(stats.numpy(), clips):
        padded = np.pad(clip, (0, max(0, EXAMPLE_SAMPLES - len(clip))))
        ref = ref_log_mel(padded.astype(np.float64))
        # the bands' four statistics, then those of the first 20 MFCCs (scipy's orthonormal DCT-II)
        for start, values in ((0, ref), (4 * N_MELS, scipy.fft.dct(ref, type=2, norm="ortho", axis=1)[:, :20])):
            width, delta = values.shape[1], np.diff(values, axis=0)
            expected = [values.mean(axis=0), values.std(axis=0), np.abs(delta).mean(axis=0), delta.std(axis=0)]
            for k, value in enumerate(expected):
                np.testing.assert_allclose(row[start + k * width : start + (k + 1) * width], value, atol=1e-4, rtol=0)
