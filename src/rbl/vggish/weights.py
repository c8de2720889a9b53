"""Load the torchvggish v0.1 weight files (the CNN state dict and the PCA params) into the model.

Files are found, fetched and checked by rbl.weight_files, loaded with weights_only=True so no
arbitrary object is ever unpickled, and validated key by key, so a bad or partial file fails with
a message naming the file and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from rbl.errors import InputError
from rbl.vggish.model import (
    CPU_CNN_BATCH,
    PCA_SHAPES,
    Postprocessor,
    VGGish,
    VGGishExtractor,
    official_state_dict_shapes,
)
from rbl.weight_files import find_or_fetch


def _numpy_safe_globals() -> list:
    """What unpickling a plain numeric numpy array needs (PCA files may hold numpy arrays)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtype_types = {type(np.dtype(code)) for code in "?bhilqBHILQefdg"}
    return [
        np.ndarray,
        np.dtype,
        *dtype_types,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
    ]


def _load(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable, truncated, or holding objects weights_only refuses
        raise InputError(
            f"Could not load the VGGish weights file {path} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            "It must be a torch.save'd dict of tensors or numeric arrays; replace it with the published file."
        ) from err
    if not isinstance(obj, Mapping):
        raise InputError(f"The VGGish weights file {path} holds a {type(obj).__name__}, not a dict of tensors.")
    return dict(obj)


def _to_tensor(value: object, path: Path, key: str) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).float()
    except (TypeError, ValueError) as err:
        raise InputError(f"Key '{key}' of the VGGish weights file {path} is not a numeric array.") from err


def _validate(
    params: Mapping[str, object], expected: Mapping[str, tuple[int, ...]], path: Path
) -> dict[str, torch.Tensor]:
    """Tensors of `params` checked against `expected` keys and shapes; every problem in one InputError."""
    problems = [f"missing key '{k}'" for k in expected if k not in params]
    problems += [f"unexpected key '{k}'" for k in params if k not in expected]
    tensors = {k: _to_tensor(v, path, k) for k, v in params.items() if k in expected}
    problems += [
        f"key '{k}' has shape {tuple(t.shape)}, expected {expected[k]}"
        for k, t in tensors.items()
        if tuple(t.shape) != expected[k]
    ]
    if problems:
        raise InputError(
            f"The VGGish weights file {path} does not match the torchvggish v0.1 layout: "
            + "; ".join(problems)
            + ". Replace it with the published file."
        )
    return tensors


def load_state_dicts(cnn_path: Path, pca_path: Path) -> tuple[dict, dict]:
    """Safely load and validate the CNN state dict and the PCA params (float32 tensors, pca_means (128,))."""
    cnn = _validate(_load(Path(cnn_path)), official_state_dict_shapes(), Path(cnn_path))
    pca_raw = _load(Path(pca_path))
    means = pca_raw.get("pca_means")
    if means is not None and tuple(np.shape(means)) == (PCA_SHAPES["pca_means"][0], 1):
        pca_raw["pca_means"] = _to_tensor(means, Path(pca_path), "pca_means").reshape(-1)
    pca = _validate(pca_raw, PCA_SHAPES, Path(pca_path))
    return cnn, pca


def load_extractor(
    weights_dir: Path,
    download: bool,
    final_relu: bool = True,
    device: torch.device | str = "cpu",
    verify: bool = True,
    precision: str = "float32",
) -> VGGishExtractor:
    """The VGGish extractor with the published weights, in eval mode on `device`.

    On a CPU the convolution weights are stored channels-last (NHWC), which oneDNN's kernels run
    faster than NCHW (outputs equal up to float rounding; see benchmarks/README.md), and the CNN
    takes CPU_CNN_BATCH examples per call. Other devices keep the layout and take whole batches.
    """
    cnn_path, pca_path = find_or_fetch(weights_dir, download, verify=verify)
    cnn, pca = load_state_dicts(cnn_path, pca_path)
    with torch.device("meta"):  # no throwaway random init of 72M parameters
        vggish = VGGish(final_relu=final_relu)
    vggish.load_state_dict(cnn, strict=True, assign=True)
    on_cpu = torch.device(device).type == "cpu"
    extractor = VGGishExtractor(
        vggish, Postprocessor(pca), cnn_batch=CPU_CNN_BATCH if on_cpu else None, precision=precision
    ).to(device)
    if on_cpu:
        extractor.vggish.to(memory_format=torch.channels_last)
    return extractor.eval()
