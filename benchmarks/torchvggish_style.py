"""The per-file VGGish path, written the way torchvggish (harritaylor/torchvggish v0.1) works.

For each file: decode, mix to mono, resample to 16 kHz, compute the log-mel examples with NumPy
exactly as Google's `mel_features.py` / `vggish_input.waveform_to_examples` do (float64), then run
the VGG CNN and the PCA postprocessor on that one file's examples, and mean-pool them.

Two differences from torchvggish, both in the baseline's favour or neutral:
- Resampling uses soxr (quality "HQ", as `rbl.audio`) instead of resampy, so the 44.1 kHz path
  computes the same waveform as ours and the embeddings can be compared. resampy is slower.
- The CNN runs under `torch.inference_mode()`; torchvggish's `forward` records autograd history.

A benchmark baseline only: nothing in `src/` or `tests/` imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

# vggish_params.py
SAMPLE_RATE = 16000
STFT_WINDOW_LENGTH_SECONDS = 0.025
STFT_HOP_LENGTH_SECONDS = 0.010
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125
MEL_MAX_HZ = 7500
LOG_OFFSET = 0.01
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0


# ---- mel_features.py ----


def frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    num_samples = data.shape[0]
    num_frames = 1 + int(np.floor((num_samples - window_length) / hop_length))
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides)


def periodic_hann(window_length: int) -> np.ndarray:
    return 0.5 - (0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length)))


def stft_magnitude(signal: np.ndarray, fft_length: int, hop_length: int, window_length: int) -> np.ndarray:
    frames = frame(signal, window_length, hop_length)
    window = periodic_hann(window_length)
    windowed_frames = frames * window
    return np.abs(np.fft.rfft(windowed_frames, int(fft_length)))


def hertz_to_mel(frequencies_hertz):
    return 1127.0 * np.log(1.0 + (frequencies_hertz / 700.0))


def spectrogram_to_mel_matrix(
    num_mel_bins: int,
    num_spectrogram_bins: int,
    audio_sample_rate: int,
    lower_edge_hertz: float,
    upper_edge_hertz: float,
) -> np.ndarray:
    nyquist_hertz = audio_sample_rate / 2.0
    spectrogram_bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hertz, num_spectrogram_bins))
    band_edges_mel = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    mel_weights_matrix = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lower_edge_mel, center_mel, upper_edge_mel = band_edges_mel[i : i + 3]
        lower_slope = (spectrogram_bins_mel - lower_edge_mel) / (center_mel - lower_edge_mel)
        upper_slope = (upper_edge_mel - spectrogram_bins_mel) / (upper_edge_mel - center_mel)
        mel_weights_matrix[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    mel_weights_matrix[0, :] = 0.0
    return mel_weights_matrix


def log_mel_spectrogram(
    data: np.ndarray,
    audio_sample_rate: int,
    log_offset: float,
    window_length_secs: float,
    hop_length_secs: float,
    **kwargs,
) -> np.ndarray:
    window_length_samples = int(round(audio_sample_rate * window_length_secs))
    hop_length_samples = int(round(audio_sample_rate * hop_length_secs))
    fft_length = 2 ** int(np.ceil(np.log(window_length_samples) / np.log(2.0)))
    spectrogram = stft_magnitude(
        data, fft_length=fft_length, hop_length=hop_length_samples, window_length=window_length_samples
    )
    mel_spectrogram = np.dot(
        spectrogram,
        spectrogram_to_mel_matrix(
            num_spectrogram_bins=spectrogram.shape[1], audio_sample_rate=audio_sample_rate, **kwargs
        ),
    )
    return np.log(mel_spectrogram + log_offset)


# ---- vggish_input.py (resampy.resample replaced by soxr, see the module docstring) ----


def log_mel_16k(data: np.ndarray) -> np.ndarray:
    """waveform_to_examples' log-mel step, with vggish_params, of a 16 kHz waveform: (frames, 64)."""
    return log_mel_spectrogram(
        data,
        audio_sample_rate=SAMPLE_RATE,
        log_offset=LOG_OFFSET,
        window_length_secs=STFT_WINDOW_LENGTH_SECONDS,
        hop_length_secs=STFT_HOP_LENGTH_SECONDS,
        num_mel_bins=NUM_MEL_BINS,
        lower_edge_hertz=MEL_MIN_HZ,
        upper_edge_hertz=MEL_MAX_HZ,
    )


def waveform_to_examples(data: np.ndarray, sample_rate: int) -> np.ndarray:
    """(samples,) or (samples, channels) at any rate -> log-mel examples (n, 96, 64), float64."""
    if len(data.shape) > 1:
        data = np.mean(data, axis=1)
    if sample_rate != SAMPLE_RATE:
        data = soxr.resample(data.astype(np.float32), sample_rate, SAMPLE_RATE, quality="HQ")
    log_mel = log_mel_16k(data.astype(np.float64))
    features_sample_rate = 1.0 / STFT_HOP_LENGTH_SECONDS
    example_window_length = int(round(EXAMPLE_WINDOW_SECONDS * features_sample_rate))
    example_hop_length = int(round(EXAMPLE_HOP_SECONDS * features_sample_rate))
    return frame(log_mel, window_length=example_window_length, hop_length=example_hop_length)


def wavfile_to_examples(path: str | Path) -> np.ndarray:
    """torchvggish reads int16 and scales by 1/32768; soundfile's float32 read does the same."""
    data, sr = sf.read(path, dtype="int16")
    return waveform_to_examples(data / 32768.0, sr)


# ---- vggish.py (torchvggish) ----


class VGG(nn.Module):
    """torchvggish's VGG: the same module names, so the official state dict loads strictly."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = int(v)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(True),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Linear(4096, 128),
            nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous()
        x = x.view(x.size(0), -1)
        return self.embeddings(x)


class TorchVGGishStyle(VGG):
    """torchvggish's VGGish: file -> examples -> VGG -> PCA + 8-bit quantisation (one file per call)."""

    def __init__(self, cnn_state: dict, pca_params: dict) -> None:
        super().__init__()
        self.load_state_dict(cnn_state, strict=True)
        self.pca_eigen_vectors = torch.as_tensor(np.asarray(pca_params["pca_eigen_vectors"]), dtype=torch.float32)
        self.pca_means = torch.as_tensor(np.asarray(pca_params["pca_means"]), dtype=torch.float32).reshape(-1, 1)
        self.eval()

    def postprocess(self, embeddings_batch: torch.Tensor) -> torch.Tensor:
        pca_applied = torch.mm(self.pca_eigen_vectors, (embeddings_batch.t() - self.pca_means)).t()
        clipped = torch.clamp(pca_applied, QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        return torch.round((clipped - QUANTIZE_MIN_VAL) * (255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)))

    def embed_file(self, path: str | Path) -> torch.Tensor:
        """Per-example embeddings (n, 128) of one file, as torchvggish's `forward(filename)`."""
        examples = torch.tensor(wavfile_to_examples(path))[:, None, :, :].float()
        return self.postprocess(VGG.forward(self, examples))


def load(cnn_path: str | Path, pca_path: str | Path) -> TorchVGGishStyle:
    """The baseline model from the two torchvggish weight files (loaded as torchvggish does, via torch.load)."""
    cnn = torch.load(cnn_path, map_location="cpu", weights_only=True)
    pca = torch.load(pca_path, map_location="cpu", weights_only=False)
    return TorchVGGishStyle(cnn, pca)


def extract_pooled(model: TorchVGGishStyle, paths: list[str]) -> np.ndarray:
    """Mean-pooled embedding of each file, one file at a time: (N, 128)."""
    out = np.zeros((len(paths), 128), dtype=np.float32)
    with torch.inference_mode():
        for i, path in enumerate(paths):
            out[i] = model.embed_file(path).mean(dim=0).numpy()
    return out
