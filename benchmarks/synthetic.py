"""Generated inputs for the extraction benchmarks: VGGish weight files and WAV clips.

No real VGGish weights can be downloaded here, so the weight files hold random values of the
official keys and shapes (He-scaled, so activations stay O(1) through the network and the
quantised embeddings are not all saturated); they load through the real loader with
`verify=False`. The speed of the CNN does not depend on the values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from rbl.vggish import CNN_FILENAME, PCA_FILENAME, official_state_dict_shapes


def write_weights(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The two torchvggish weight files, full-size random tensors, under their official names."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    cnn = {}
    for key, shape in official_state_dict_shapes().items():
        if key.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            cnn[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            cnn[key] = torch.randn(shape, generator=gen) * 0.1
    rng = np.random.default_rng(seed + 1)
    pca = {
        "pca_eigen_vectors": (rng.standard_normal((128, 128)) / np.sqrt(128) * 3).astype(np.float32),
        "pca_means": (rng.standard_normal((128, 1)) * 0.3).astype(np.float32),
    }
    torch.save(cnn, folder / CNN_FILENAME)
    torch.save(pca, folder / PCA_FILENAME)
    return folder / CNN_FILENAME, folder / PCA_FILENAME


def clip(i: int, seconds: float, rate: int) -> np.ndarray:
    """Clip i: noise plus two tones that differ per clip, float32 in [-1, 1]."""
    rng = np.random.default_rng(i)
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float32) / rate
    f1, f2 = 100.0 + 37.0 * (i % 97), 1000.0 + 113.0 * (i % 53)
    x = 0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t)
    x += 0.1 * rng.standard_normal(n).astype(np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_clips(folder: Path, n: int, seconds: float, rate: int, start: int = 0) -> list[str]:
    """n mono 16-bit PCM WAV files (clips start..start+n-1) in `folder`; their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, clip(i, seconds, rate), rate, subtype="PCM_16")
        paths.append(str(path))
    return paths
