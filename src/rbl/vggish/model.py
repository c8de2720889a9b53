"""The VGGish CNN, its PCA/quantisation postprocessor, and the two combined, laid out as torchvggish.

Module names and shapes follow harritaylor/torchvggish v0.1 exactly so its published state dict
loads with strict=True and gives the published embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rbl.vggish.frontend import EXAMPLE_FRAMES, N_MELS

EMBEDDING_SIZE = 128
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0

PCA_SHAPES: dict[str, tuple[int, ...]] = {
    "pca_eigen_vectors": (EMBEDDING_SIZE, EMBEDDING_SIZE),
    "pca_means": (EMBEDDING_SIZE,),
}

_CONV_CHANNELS = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"]
_FLAT = 512 * 4 * 6
# Examples per CNN call on a CPU (see VGGishExtractor): on a 2-core EPYC, channels-last calls of 16
# to 320 examples ran within 5 % of each other; 64 keeps one call's activations near 130 MB.
CPU_CNN_BATCH = 64
PRECISIONS = ("float32", "bfloat16", "float16")  # the CNN's arithmetic (autocast below float32)


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for v in _CONV_CHANNELS:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(v)
    return nn.Sequential(*layers)


def _embeddings() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(_FLAT, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, EMBEDDING_SIZE),
        nn.ReLU(inplace=True),
    )


class VGGish(nn.Module):
    """Log-mel examples (N, 96, 64) or (N, 1, 96, 64) -> raw 128-d embeddings (N, 128).

    `final_relu=True` reproduces torchvggish, which ends with a ReLU; False skips it, giving the
    TensorFlow original's linear output. The state dict keys are the same either way.
    """

    def __init__(self, final_relu: bool = True) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.features = _features()
        self.embeddings = _embeddings()

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.shape[1:] != (1, EXAMPLE_FRAMES, N_MELS):
            raise ValueError(f"expected examples (N, 96, 64) or (N, 1, 96, 64), got {tuple(x.shape)}")
        x = self.features(x)
        # Channels-last flattening, as the TensorFlow weights were laid out (torchvggish's order).
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous().view(x.size(0), -1)
        head = self.embeddings if self.final_relu else self.embeddings[:-1]
        return head(x)


def official_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of the official torchvggish CNN state dict with its shape."""
    with torch.device("meta"):  # shapes only: no memory, no random init
        model = VGGish()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


class Postprocessor(nn.Module):
    """PCA whitening then 8-bit quantisation of raw embeddings (vggish_postprocess, as torchvggish).

    `params` holds 'pca_eigen_vectors' (128, 128) and 'pca_means' (128,) or (128, 1). With
    `quantize=True` the output is float values in {0, ..., 255}: round((clip(pca, -2, 2) + 2) * 255/4);
    with False it is the unclipped PCA-whitened embedding.
    """

    def __init__(self, params: Mapping[str, Tensor], quantize: bool = True) -> None:
        super().__init__()
        self.quantize = quantize
        vectors = torch.as_tensor(params["pca_eigen_vectors"], dtype=torch.float32)
        means = torch.as_tensor(params["pca_means"], dtype=torch.float32).reshape(-1)
        self.register_buffer("pca_eigen_vectors", vectors.clone())
        self.register_buffer("pca_means", means.clone())

    def forward(self, embeddings: Tensor) -> Tensor:
        pca = (self.pca_eigen_vectors @ (embeddings.T - self.pca_means[:, None])).T
        if not self.quantize:
            return pca
        clipped = torch.clamp(pca, QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))


class VGGishExtractor(nn.Module):
    """VGGish followed by its postprocessor: examples (M, 96, 64) -> embeddings (M, 128); `pool` per clip.

    `cnn_batch` caps how many examples go through the CNN at once (None: all), which bounds memory
    (the first layer's output alone is 1.5 MB per example); on a CPU larger calls are no faster.
    `precision` runs the CNN alone under autocast ("bfloat16" or "float16"); the frontend before it
    and the PCA and quantisation after it stay float32 (benchmarks/README.md shows the error).
    """

    def __init__(
        self, vggish: VGGish, postprocessor: Postprocessor, cnn_batch: int | None = None, precision: str = "float32"
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.vggish = vggish
        self.postprocessor = postprocessor
        self.cnn_batch = cnn_batch
        self.precision = precision

    def embed_raw(self, examples: Tensor) -> Tensor:
        """The CNN's raw embeddings (M, 128) in float32, computed `cnn_batch` examples at a time."""
        step = self.cnn_batch or len(examples)
        dtype = getattr(torch, self.precision)
        with torch.autocast(examples.device.type, dtype=dtype, enabled=dtype != torch.float32):
            if len(examples) <= step:
                return self.vggish(examples).float()
            return torch.cat([self.vggish(examples[k : k + step]).float() for k in range(0, len(examples), step)])

    def forward(self, examples: Tensor) -> Tensor:
        return self.postprocessor(self.embed_raw(examples))

    @staticmethod
    def pool(embeddings: Tensor, clip_index: Tensor, n_clips: int) -> Tensor:
        """Mean embedding per clip (n_clips, 128); clips without examples get zeros."""
        sums = embeddings.new_zeros(n_clips, embeddings.shape[1]).index_add(0, clip_index, embeddings)
        counts = torch.bincount(clip_index, minlength=n_clips).clamp(min=1).to(embeddings.dtype)
        return sums / counts[:, None]
