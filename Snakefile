"""RbL pipeline: audio + taxonomy -> features -> embeddings trained with the rank-based loss -> metrics."""

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/summary.md",
    default_target: True
