"""Decoding audio files to mono 16 kHz float32 waveforms (soundfile to decode, soxr to resample).

A file that cannot be decoded completely raises InputError naming the file and why: not audio (e.g.
text renamed .wav), empty (0 bytes or no samples), a WAV whose data ends before its header says it
does (a truncated copy or download), a codec error part-way (FLAC/OGG), or NaN/Inf samples.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf
import soxr

from rbl.errors import InputError

TARGET_RATE = 16000
_WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)  # streaming writers leave the data size unset


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array."""
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op at the target rate."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def wav_truncation(path: str | os.PathLike) -> str | None:
    """Why a RIFF/WAVE file is truncated (its data chunk declares more bytes than the file holds), or None.

    libsndfile reads such a file without complaint, returning only the samples present, which would
    make a cut-off copy look like a shorter clip. Files that are not RIFF/WAVE are not checked.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            offset = 12
            while offset + 8 <= size:
                handle.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
                if chunk_id == b"data":
                    available = size - offset - 8
                    if chunk_size not in _WAV_SIZE_UNKNOWN and chunk_size > available:
                        return (f"truncated: the WAV header declares {chunk_size} bytes of audio, "
                                f"the file holds {available}")
                    return None
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


def load(path: str | os.PathLike, target: int = TARGET_RATE) -> np.ndarray:
    """Decode a file to a mono float32 waveform at `target` Hz; undecodable or empty files raise InputError."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes); replace or remove it")
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError, MemoryError) as err:
        detail = str(err).strip() or type(err).__name__
        raise InputError(f"{path}: cannot decode audio ({detail}); the file is corrupt or not in a supported "
                         "format (wav, flac, ogg, mp3, aiff): replace or remove it") from None
    truncated = wav_truncation(path)
    if truncated:
        raise InputError(f"{path}: {truncated}; replace it with a complete copy or remove it")
    if samples.shape[0] == 0:
        raise InputError(f"{path}: the file holds no samples; replace or remove it")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).any(axis=1).sum())
        raise InputError(f"{path}: {bad} sample frame(s) are NaN or infinite; repair or remove the file")
    return resample(to_mono(samples), rate, target)
