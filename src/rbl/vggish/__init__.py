"""VGGish (Hershey et al. 2017) in torch: published log-mel frontend, torchvggish-compatible model, weights."""

from rbl.vggish.frontend import (
    EXAMPLE_FRAMES,
    EXAMPLE_HOP_SAMPLES,
    EXAMPLE_SAMPLES,
    N_MELS,
    SAMPLE_RATE,
    LogMelFrontend,
    mel_matrix,
)
from rbl.vggish.model import (
    CPU_CNN_BATCH,
    PCA_SHAPES,
    Postprocessor,
    VGGish,
    VGGishExtractor,
    official_state_dict_shapes,
)
from rbl.vggish.weights import load_extractor, load_state_dicts
from rbl.weight_files import (
    CNN_FILENAME,
    CNN_SHA256_PREFIX,
    CNN_URL,
    PCA_FILENAME,
    PCA_SHA256_PREFIX,
    PCA_URL,
    download,
    find_or_fetch,
)

__all__ = [
    "CNN_FILENAME",
    "CNN_SHA256_PREFIX",
    "CNN_URL",
    "CPU_CNN_BATCH",
    "EXAMPLE_FRAMES",
    "EXAMPLE_HOP_SAMPLES",
    "EXAMPLE_SAMPLES",
    "N_MELS",
    "PCA_FILENAME",
    "PCA_SHA256_PREFIX",
    "PCA_SHAPES",
    "PCA_URL",
    "SAMPLE_RATE",
    "LogMelFrontend",
    "Postprocessor",
    "VGGish",
    "VGGishExtractor",
    "download",
    "find_or_fetch",
    "load_extractor",
    "load_state_dicts",
    "mel_matrix",
    "official_state_dict_shapes",
]
