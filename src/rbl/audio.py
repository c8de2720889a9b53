"""Decoding audio files to mono 16 kHz float32 waveforms (soundfile to decode, soxr to resample), in blocks.

A file that cannot be decoded completely raises InputError naming the file and why: not audio (e.g.
text renamed .wav), empty (0 bytes or no samples), a WAV whose data ends before its header says it
does (a truncated copy or download), a sample rate no audio for these features can have (a damaged
header), a codec error part-way (FLAC/OGG), or NaN/Inf samples. Header problems are found before
any sample is read; `stream` decodes and resamples block by block, so memory does not grow with
the length of the file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from rbl.errors import InputError
from rbl.logmel import MEL_LOW_HZ

TARGET_RATE = 16000
_WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)  # streaming writers leave the data size unset
# Lowest usable sample rate: its Nyquist frequency must exceed the lowest mel band edge.
MIN_RATE = int(2 * MEL_LOW_HZ)
# Decoded samples per block read from a file (at its own rate and channels): 4 MiB, 1 M float32
# values. Blocks bound decoding memory whatever the file's length; a clip of 10 s at 48 kHz stereo
# is still one block, read and resampled in one call as before.
BLOCK_BYTES = 4 * 2**20


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array."""
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32)


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
                        return (
                            f"truncated: the WAV header declares {chunk_size} bytes of audio, "
                            f"the file holds {available}"
                        )
                    return None
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


def _decode_error(path, err: BaseException) -> InputError:
    detail = str(err).strip() or type(err).__name__
    return InputError(
        f"{path}: cannot decode audio ({detail}); the file is corrupt or not in a supported "
        "format (wav, flac, ogg, mp3, aiff): replace or remove it"
    )


def check_header(path: str | os.PathLike, rate: int, min_rate: int = MIN_RATE) -> None:
    """Refuse a file whose header alone shows it unusable, before any sample is read or allocated.

    A truncated WAV (data chunk larger than the file), or a sample rate at or below `min_rate`: audio
    sampled at 250 Hz or less holds nothing above 125 Hz, the lowest mel band the features use, so
    such a rate means a damaged header (a 40 KB WAV claiming 1 Hz would resample to hours of audio).
    """
    truncated = wav_truncation(path)
    if truncated:
        raise InputError(f"{path}: {truncated}; replace it with a complete copy or remove it")
    if rate <= min_rate:
        raise InputError(
            f"{path}: the header gives a sample rate of {rate} Hz; audio at {min_rate} Hz or less "
            f"holds nothing in the mel bands the features use ({MEL_LOW_HZ:g} Hz and up), so the "
            "header is probably damaged: re-export the file at its true rate or remove it"
        )


def stream(path: str | os.PathLike, target: int = TARGET_RATE, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """Decode a file to mono float32 blocks at `target` Hz, holding one block of the file at a time.

    The header is checked first (`check_header`); blocks are `block_bytes` of decoded samples at the
    file's rate and channel count, resampled by one soxr stream, so the result is sample for sample
    the one-shot `soxr.resample` of the whole file (soxr keeps the filter state across blocks) and
    memory does not grow with the file's length. Undecodable, empty or non-finite audio raises
    InputError naming the file; NaN/Inf frames are counted over the whole file, then refused.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes); replace or remove it")
    try:
        handle = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise _decode_error(path, err) from None
    with handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        check_header(path, rate)
        block = max(1, block_bytes // (4 * channels))
        resampler = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")
        frames = bad = 0
        while True:
            try:
                samples = handle.read(block, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
                raise _decode_error(path, err) from None
            last = samples.shape[0] < block
            frames += samples.shape[0]
            finite = np.isfinite(samples)
            if not finite.all():
                bad += int((~finite).any(axis=1).sum())
            mono = to_mono(samples)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                break
    if frames == 0:
        raise InputError(f"{path}: the file holds no samples; replace or remove it")
    if bad:
        raise InputError(f"{path}: {bad} sample frame(s) are NaN or infinite; repair or remove the file")


def load(path: str | os.PathLike, target: int = TARGET_RATE) -> np.ndarray:
    """Decode a whole file to a mono float32 waveform at `target` Hz (`stream`, joined); errors as `stream`."""
    blocks = list(stream(path, target))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
