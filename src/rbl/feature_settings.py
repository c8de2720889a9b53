"""The extract stage's settings, one source for the `rbl extract` flags and the workflow's arguments.

Kept free of heavy imports (no torch) so the command line can build its options quickly. Each field
names its config key: workflow/rules/common.smk (`extractor_args`) passes every field from there,
and `rbl extract` takes one flag per field (rbl.stages.options.add_settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXTRACTORS = ("auto", "vggish", "logmel")
# Not an extractor: the dataset's own vectors (dataset.features_dir), read by the extract stage.
PRECOMPUTED = "precomputed"
ON_ERROR = ("stop", "skip")
PRECISIONS = ("float32", "bfloat16", "float16")


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
