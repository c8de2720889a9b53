"""The VGGish log-mel frontend in numpy: its constants, mel matrix and window, framing, log-mel frames.

Google's research/audioset/vggish front end (16 kHz, 25 ms periodic Hann window, 10 ms hop,
512-point FFT magnitude, 64 HTK mel bands 125-7500 Hz, log(mel + 0.01), 96-frame examples).
This module is its one definition: rbl.vggish.frontend builds the torch frontend the VGGish CNN
runs on (batched, on any device) from the same matrix and window, and the `logmel` extractor
computes its frames here, without torch. Numpy because importing torch costs about 1.4 s of every
extract job that computes a clip (most of a one-clip rerun's extraction at 100,000 clips), and
because numpy's float32 FFT frames a clip on the CPU about 3x faster than the torch frontend here
(benchmarks/logmel_frontend.py). The two agree to float32 rounding (tests/test_vggish_frontend.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_LENGTH = 512  # next power of two above the window
N_FFT_BINS = FFT_LENGTH // 2 + 1
N_MELS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EXAMPLE_SAMPLES = WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * HOP_SAMPLES  # 15600
EXAMPLE_HOP_SAMPLES = EXAMPLE_FRAMES * HOP_SAMPLES  # 15360
N_CEPSTRA = 20  # the `logmel` extractor's cepstral coefficients per frame (cepstral_matrix)
# Samples a run of frames spans past its last hop: that frame's window ends 240 samples after it.
FRAME_OVERLAP = WINDOW_SAMPLES - HOP_SAMPLES

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
    """HTK mel scale, as mel_features.hertz_to_mel."""
    return _MEL_HIGH_Q * np.log1p(hertz / _MEL_BREAK_HZ)


def mel_matrix() -> np.ndarray:
    """The (257, 64) float64 matrix mapping magnitude-spectrum rows to mel bands
    (mel_features.spectrogram_to_mel_matrix): triangles linear in the mel domain, the DC bin row
    zeroed as HTK does. Callers cast it, so every dtype gets the same rounding of the reference."""
    bins_mel = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, N_FFT_BINS))
    lo, hi = _hertz_to_mel(np.array([MEL_LOW_HZ, MEL_HIGH_HZ]))
    edges = np.linspace(lo, hi, N_MELS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (centre - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(np.minimum(lower_slope, upper_slope), 0.0)
    weights[0, :] = 0.0
    return weights


def periodic_hann() -> np.ndarray:
    """The 400-sample periodic Hann window of mel_features.periodic_hann, float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / WINDOW_SAMPLES * np.arange(WINDOW_SAMPLES))


def cepstral_matrix() -> np.ndarray:
    """The (64, 20) float64 matrix taking a log-mel frame to its first 20 cepstral coefficients (MFCCs).

    The orthonormal DCT-II of the 64 bands (scipy.fft.dct(..., type=2, norm="ortho"), the MFCC
    convention of librosa), its first N_CEPSTRA columns: the smooth spectral envelope that timbre
    lives in, with the fine harmonic ripple of the pitch left out. Written out rather than taken
    from scipy.fft.dct, whose import (about 0.4 s) every extract job would pay; the tests check it
    against scipy.
    """
    bands, k = np.arange(N_MELS)[:, None], np.arange(N_CEPSTRA)[None, :]
    matrix = np.sqrt(2.0 / N_MELS) * np.cos(np.pi * k * (2 * bands + 1) / (2 * N_MELS))
    matrix[:, 0] /= np.sqrt(2.0)
    return matrix


@cache
def _float32_tables() -> tuple[np.ndarray, np.ndarray]:
    window, mel = periodic_hann().astype(np.float32), mel_matrix().astype(np.float32)
    window.flags.writeable = mel.flags.writeable = False
    return window, mel


def examples_in(n_samples: int) -> int:
    """Examples of a clip of n samples: 1 + (n - 15600) // 15360, and 1 for a clip shorter than one."""
    return 1 + (max(n_samples, EXAMPLE_SAMPLES) - EXAMPLE_SAMPLES) // EXAMPLE_HOP_SAMPLES


def frames_in(n_samples: int) -> int:
    """Frames of a clip of n samples once padded to one example: 1 + (n - 400) // 160."""
    return 1 + (max(n_samples, EXAMPLE_SAMPLES) - WINDOW_SAMPLES) // HOP_SAMPLES


def frame_pieces(blocks: Iterable[np.ndarray], piece_frames: int, unit: int = 1) -> Iterator[tuple[np.ndarray, int]]:
    """Cut a clip arriving as waveform blocks into (piece, frames) framed exactly as the whole clip is.

    Piece p holds the samples of the clip's frames p*piece_frames onwards (at most piece_frames of
    them, plus the 240-sample overlap that the last frame's window needs), so framing each piece
    and joining the frames gives the frames of the whole clip. Frame counts are multiples of `unit`
    (96 for VGGish examples: a partial example at the end is dropped, as `clip_examples` does;
    1 for all frames). A clip shorter than one piece comes as one piece with the whole-clip count
    (`examples_in`/`frames_in`: padded to one example); `logmel_frames` and the torch frontend's
    `clip_logmel` zero-pad it. Memory holds one piece and one block, whatever the clip's length.
    """
    if unit not in (1, EXAMPLE_FRAMES) or piece_frames <= 0 or piece_frames % unit:
        raise ValueError(
            f"unit must be 1 or {EXAMPLE_FRAMES} and divide piece_frames > 0, "
            f"got unit {unit}, piece_frames {piece_frames}"
        )
    span, step = HOP_SAMPLES * piece_frames + FRAME_OVERLAP, HOP_SAMPLES * piece_frames
    held: list[np.ndarray] = []
    size, whole = 0, True
    for block in blocks:
        held.append(block)
        size += len(block)
        if size < span:
            continue
        joined = np.concatenate(held)
        start = 0
        while len(joined) - start >= span:
            yield joined[start : start + span], piece_frames
            start += step
            whole = False
        held, size = [joined[start:].copy()], len(joined) - start
    rest = np.concatenate(held) if held else np.zeros(0, np.float32)
    if whole:
        frames = EXAMPLE_FRAMES * examples_in(len(rest)) if unit == EXAMPLE_FRAMES else frames_in(len(rest))
    else:
        frames = (1 + (len(rest) - WINDOW_SAMPLES) // HOP_SAMPLES) // unit * unit if len(rest) >= WINDOW_SAMPLES else 0
    if frames:
        yield rest, frames


def logmel_frames(wave: np.ndarray, frames: int) -> np.ndarray:
    """Log-mel of the first `frames` frames of a 1-D float32 waveform (zero-padded at the end): (frames, 64) float32."""
    if wave.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {wave.shape}")
    window, mel = _float32_tables()
    needed = HOP_SAMPLES * (frames - 1) + WINDOW_SAMPLES
    wave = np.asarray(wave, dtype=np.float32)[:needed]
    if len(wave) < needed:
        wave = np.pad(wave, (0, needed - len(wave)))
    framed = np.lib.stride_tricks.sliding_window_view(wave, WINDOW_SAMPLES)[::HOP_SAMPLES] * window
    # rfft's n pads each 400-sample frame to 512 with zeros, as the reference's FFT does
    return np.log(np.abs(np.fft.rfft(framed, n=FFT_LENGTH)) @ mel + np.float32(LOG_OFFSET))
