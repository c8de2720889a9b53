"""Decoding audio files to mono 16 kHz float32 waveforms (soundfile to decode, soxr to resample)."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

from rbl.errors import InputError

TARGET_RATE = 16000


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array."""
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op at the target rate."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def load(path: str | os.PathLike, target: int = TARGET_RATE) -> np.ndarray:
    """Decode a file to a mono float32 waveform at `target` Hz; undecodable or empty files raise InputError."""
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise InputError(f"{path}: cannot decode audio ({err}); replace or remove the file") from None
    if samples.shape[0] == 0:
        raise InputError(f"{path}: the file holds no samples; replace or remove it")
    return resample(to_mono(samples), rate, target)
