"""VGGish log-mel frontend in torch: the published mel_features / vggish_input algorithm, batched.

The frontend the VGGish CNN runs on, on any device, many clips per call. Its constants, mel matrix,
window and framing are rbl.logmel's (the frontend's one definition, in numpy, which the `logmel`
extractor computes with), cast to torch here, so the weights see exactly the input they were
trained on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rbl import logmel
from rbl.logmel import (
    EXAMPLE_FRAMES,
    EXAMPLE_HOP_SAMPLES,
    EXAMPLE_SAMPLES,
    FFT_LENGTH,
    HOP_SAMPLES,
    LOG_OFFSET,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
)

__all__ = [
    "EXAMPLE_FRAMES",
    "EXAMPLE_HOP_SAMPLES",
    "EXAMPLE_SAMPLES",
    "N_MELS",
    "SAMPLE_RATE",
    "LogMelFrontend",
    "mel_matrix",
    "periodic_hann",
    "pieces_logmel",
]


def mel_matrix(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """rbl.logmel.mel_matrix, (257, 64), built in float64 and cast to `dtype` on `device`."""
    return torch.from_numpy(logmel.mel_matrix()).to(device=device, dtype=dtype)


def periodic_hann(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """rbl.logmel.periodic_hann, the 400-sample periodic Hann window, cast to `dtype` on `device`."""
    return torch.from_numpy(logmel.periodic_hann()).to(device=device, dtype=dtype)


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
