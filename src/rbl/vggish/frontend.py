"""VGGish log-mel frontend in torch: the published mel_features / vggish_input algorithm, batched.

Reimplements Google's research/audioset/vggish front end (16 kHz, 25 ms periodic Hann window,
10 ms hop, 512-point FFT magnitude, 64 HTK mel bands 125-7500 Hz, log(mel + 0.01), 96-frame
examples) so the VGGish weights see exactly the input they were trained on, on any device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

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

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


def _hertz_to_mel(hertz: Tensor) -> Tensor:
    """HTK mel scale, as mel_features.hertz_to_mel."""
    return _MEL_HIGH_Q * torch.log1p(hertz / _MEL_BREAK_HZ)


def mel_matrix(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (257, 64) matrix mapping magnitude-spectrum rows to mel bands (mel_features.spectrogram_to_mel_matrix).

    Triangles are linear in the mel domain; the DC bin row is zeroed as HTK does. Built in float64 and
    cast, so every dtype gets the same rounding of the reference.
    """
    bins_mel = _hertz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, N_FFT_BINS, dtype=torch.float64))
    lo, hi = _hertz_to_mel(torch.tensor([MEL_LOW_HZ, MEL_HIGH_HZ], dtype=torch.float64))
    edges = torch.linspace(float(lo), float(hi), N_MELS + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (centre - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(lower_slope, upper_slope), min=0.0)
    weights[0, :] = 0.0
    return weights.to(device=device, dtype=dtype)


def periodic_hann(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 400-sample periodic Hann window of mel_features.periodic_hann."""
    n = torch.arange(WINDOW_SAMPLES, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2.0 * math.pi / WINDOW_SAMPLES * n)
    return window.to(device=device, dtype=dtype)


def examples_in(n_samples: int) -> int:
    """Examples of a clip of n samples: 1 + (n - 15600) // 15360, and 1 for a clip shorter than one."""
    return 1 + (max(n_samples, EXAMPLE_SAMPLES) - EXAMPLE_SAMPLES) // EXAMPLE_HOP_SAMPLES


def frames_in(n_samples: int) -> int:
    """Frames of a clip of n samples once padded to one example: 1 + (n - 400) // 160."""
    return 1 + (max(n_samples, EXAMPLE_SAMPLES) - WINDOW_SAMPLES) // HOP_SAMPLES


# Samples a run of frames spans past its last hop: that frame's window ends 240 samples after it.
FRAME_OVERLAP = WINDOW_SAMPLES - HOP_SAMPLES


def frame_pieces(blocks: Iterable[np.ndarray], piece_frames: int, unit: int = 1) -> Iterator[tuple[np.ndarray, int]]:
    """Cut a clip arriving as waveform blocks into (piece, frames) framed exactly as the whole clip is.

    Piece p holds the samples of the clip's frames p*piece_frames onwards (at most piece_frames of
    them, plus the 240-sample overlap that the last frame's window needs), so framing each piece
    and joining the frames gives the frames of the whole clip. Frame counts are multiples of `unit`
    (96 for VGGish examples: a partial example at the end is dropped, as `clip_examples` does;
    1 for all frames). A clip shorter than one piece comes as one piece with the whole-clip count
    (`examples_in`/`frames_in`: padded to one example); `LogMelFrontend.clip_logmel` zero-pads it.
    Memory holds one piece and one block, whatever the clip's length.
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


def pieces_logmel(waveforms: list[Tensor], frames: list[int]) -> Tensor:
    """Log-mel frames of pieces from `frame_pieces` (1-D tensors, frame counts), joined: (sum(frames), 64)."""
    _check_1d(waveforms)
    return _frontend_like(waveforms).clip_logmel(waveforms, frames)


# Hops past a clip's last frame start that its stretch of the joined buffer spans: a 512-sample
# frame starting at the last hop must end inside it.
_TAIL_HOPS = -(-(FFT_LENGTH - HOP_SAMPLES) // HOP_SAMPLES)


class LogMelFrontend(torch.nn.Module):
    """Waveforms (B, T) at 16 kHz -> log-mel frames (B, 1 + (T - 400) // 160, 64), no centre padding.

    Computes in `dtype` (the buffers' dtype). float32 agrees with the float64 reference to float32
    rounding of the spectrum (~1e-7 of a frame's peak); float64 reproduces it to ~1e-10.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        window = periodic_hann(dtype=dtype)
        self.register_buffer("window", window, persistent=False)
        # The window over a whole FFT length: zero past 400 samples, which is rfft's zero padding.
        self.register_buffer(
            "fft_window", torch.nn.functional.pad(window, (0, FFT_LENGTH - WINDOW_SAMPLES)), persistent=False
        )
        self.register_buffer("mel", mel_matrix(dtype=dtype), persistent=False)

    def frames_to_logmel(self, frames: Tensor) -> Tensor:
        """Log-mel of already framed samples (..., 400) -> (..., 64)."""
        spectrum = torch.fft.rfft(frames * self.window, n=FFT_LENGTH).abs()
        return torch.log(spectrum @ self.mel + LOG_OFFSET)

    def forward(self, waveforms: Tensor) -> Tensor:
        if waveforms.ndim != 2 or waveforms.shape[-1] < WINDOW_SAMPLES:
            raise ValueError(f"expected waveforms (B, T>={WINDOW_SAMPLES}), got shape {tuple(waveforms.shape)}")
        frames = waveforms.to(self.window.dtype).unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES)
        return self.frames_to_logmel(frames)

    def clip_logmel(self, waveforms: list[Tensor], frames: list[int]) -> Tensor:
        """Log-mel of the first frames[c] frames of each 1-D clip c (zero-padded at the end), joined: (sum, 64).

        Clips of different lengths in one call, without copying samples per frame: each clip is
        copied once into its own stretch of one buffer, (frames + 3) hops long, so that a single
        strided view frames every clip. The frames are 512 samples long with the window's zero tail
        (rfft's zero padding, without the padded copy); the 3 frames at the end of each stretch
        straddle two clips and are dropped from the log-mel, which is 8x smaller than the frames.
        """
        stretches = [HOP_SAMPLES * (k + _TAIL_HOPS) for k in frames]
        buffer = self.window.new_zeros(sum(stretches))
        keep, offset = [], 0
        for wave, k, stretch in zip(waveforms, frames, stretches):
            used = min(wave.shape[0], HOP_SAMPLES * (k - 1) + WINDOW_SAMPLES)
            buffer[offset : offset + used] = wave[:used]
            keep.append(torch.arange(offset // HOP_SAMPLES, offset // HOP_SAMPLES + k, device=buffer.device))
            offset += stretch
        windowed = buffer.unfold(0, FFT_LENGTH, HOP_SAMPLES) * self.fft_window
        logmel = torch.log(torch.fft.rfft(windowed, n=FFT_LENGTH).abs() @ self.mel + LOG_OFFSET)
        return logmel[torch.cat(keep)]


def _check_1d(waveforms: list[Tensor]) -> None:
    for wave in waveforms:
        if wave.ndim != 1:
            raise ValueError(f"expected 1-D waveforms, got shape {tuple(wave.shape)}")


def _frontend_like(waveforms: list[Tensor]) -> LogMelFrontend:
    return LogMelFrontend().to(waveforms[0].device)
