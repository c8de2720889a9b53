"""RbL pipeline: audio + taxonomy -> features -> embeddings trained with the rank-based loss -> metrics."""

import re

from snakemake.utils import min_version, validate

min_version("8.0")


# A --configfile given on the command line replaces the default (the demo) instead of being
# merged into it, so a dataset's experiment list is exactly the one its config names.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


try:
    validate(config, "workflow/schemas/config.schema.yaml")
except WorkflowError as err:
    # Snakemake's message prints the whole schema (hundreds of lines); say which key and why.
    cause = err.__context__  # the jsonschema ValidationError
    if not hasattr(cause, "absolute_path"):
        raise
    key = ".".join(str(part) for part in cause.absolute_path) or "(top level)"
    files = (
        ", ".join(map(str, workflow.config_settings.configfiles))
        or "config/config.yaml"
    )
    raise WorkflowError(
        f"config ({files}), key {key}: {cause.message}. Every key is described in "
        "config/README.md."
    ) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    exp="|".join(map(re.escape, config["experiments"])),
    seed=r"\d+",
    split="|".join(EVAL_SPLITS),


include: "workflow/rules/demo.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"


# Cheap jobs run where Snakemake runs, not as cluster jobs.
localrules:
    summarise,
    plot_embeddings,
    plot_training,
    provenance,


rule all:
    default_target: True
    input:
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/summary.md",
        f"{RESULTS}/provenance.md",
        all_plots,
