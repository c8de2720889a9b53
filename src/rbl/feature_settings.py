"""The extract stage's settings, one source for the `rbl extract` flags and the workflow's arguments.

Kept free of heavy imports (no torch) so the command line can build its options quickly. Each field
names its config key: workflow/rules/common.smk (`extractor_args`) passes every field from there,
and `rbl extract` takes one flag per field (rbl.stages.options.add_settings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

EXTRACTORS = ("auto", "vggish", "logmel")
# Not an extractor: the dataset's own vectors (dataset.features_dir), read by the extract stage.
PRECOMPUTED = "precomputed"
ON_ERROR = ("stop", "skip")
PRECISIONS = ("float32", "bfloat16", "float16")
# The published VGGish weight files (torchvggish's release) and the sha256 prefix each name carries.
WEIGHT_FILES = (("vggish-10086976.pth", "10086976"), ("vggish_pca_params-970ea276.pth", "970ea276"))


def _setting(default, config: str, help: str, choices: tuple | None = None):
    return field(default=default, metadata={"config": config, "help": help, "choices": choices})


@dataclass(frozen=True)
class ExtractSettings:
    """How clip features are computed (the config's `features:` block)."""

    extractor: str = _setting(
        "auto",
        "features.extractor",
        "vggish, logmel, auto (VGGish when its weights can be had, else logmel), or "
        "precomputed (the clips are .npy vectors: dataset.features_dir)",
        (*EXTRACTORS, PRECOMPUTED),
    )
    weights_dir: str = _setting(
        "resources/vggish",
        "features.vggish.weights_dir",
        "folder of the VGGish weights (the CNN and the PCA parameters)",
    )
    download: bool = _setting(True, "features.vggish.download", "download missing VGGish weights (true/false)")
    final_relu: bool = _setting(
        True,
        "features.vggish.final_relu",
        "keep VGGish's final ReLU before the PCA, as the published model (true/false)",
    )
    verify: bool = _setting(True, "features.vggish.verify", "check the weights' sha256 prefixes (true/false)")
    batch_clips: int = _setting(32, "features.batch_clips", "clips decoded and computed together")
    workers: int = _setting(2, "features.workers", "threads decoding audio ahead of the computation")
    device: str = _setting("cpu", "features.device", "cpu, cuda, cuda:<n> or auto")
    on_error: str = _setting(
        "stop",
        "features.on_error",
        "a clip that cannot be decoded: stop with its name, or skip it (NaN row, listed)",
        ON_ERROR,
    )
    precision: str = _setting(
        "float32",
        "features.vggish.precision",
        "the VGGish CNN's arithmetic (autocast); frontend and PCA stay float32",
        PRECISIONS,
    )


def weights_state(weights_dir: str | os.PathLike, download: bool) -> str:
    """What the extract stage will find in the weights folder, for a rule's params: weights put
    there, replaced or removed rerun extraction (with `auto` they decide the extractor); a first
    download does not. Each file is `published` when present with the published digest, or absent
    with download on (it will be fetched and verified); else its digest, or `absent`. Digests come
    from the `.sha256` markers beside the files, or are hashed and recorded once."""
    from rbl.fingerprint import file_sha256, record_digest, recorded_digest

    parts = []
    for name, prefix in WEIGHT_FILES:
        path = Path(weights_dir, name)
        if not path.is_file():
            parts.append("published" if download else "absent")
            continue
        digest = recorded_digest(path)
        if digest is None:
            digest = file_sha256(path)
            record_digest(path, digest)
        parts.append("published" if digest.startswith(prefix) else digest)
    return ",".join(parts)
