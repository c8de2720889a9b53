rule evaluate:
    input:
        embeddings=f"{RESULTS}/embeddings/{{exp}}/seed{{seed}}.npz",
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
        splits=f"{RESULTS}/splits.csv",
        info=f"{RESULTS}/features/{EXTRACTOR}.json",
    output:
        f"{RESULTS}/metrics/{{exp}}/seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/evaluate/{{exp}}/seed{{seed}}.log",
    conda:
        ENV
    params:
        dataset=DATASET["name"],
        code=code_version("evaluate"),
    shell:
        "rbl evaluate --embeddings {input.embeddings:q} --manifest {input.manifest:q} "
        "--taxonomy {input.taxonomy:q} --splits {input.splits:q} --features-info {input.info:q} "
        "--dataset {params.dataset:q} --experiment {wildcards.exp:q} --seed {wildcards.seed:q} "
        "--out {output:q} 2> {log:q}"


rule plot_embeddings:
    input:
        embeddings=f"{RESULTS}/embeddings/{{exp}}/seed{{seed}}.npz",
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
        splits=f"{RESULTS}/splits.csv",
    output:
        report(
            f"{RESULTS}/plots/embeddings/{{exp}}/seed{{seed}}_{{split}}.png",
            caption="../report/embeddings.rst",
            category="Embeddings",
            subcategory="{exp}",
            labels={"experiment": "{exp}", "seed": "{seed}", "split": "{split}"},
        ),
    log:
        f"{RESULTS}/logs/plots/embeddings/{{exp}}/seed{{seed}}_{{split}}.log",
    conda:
        ENV
    params:
        title=lambda wc: f"{wc.exp}, seed {wc.seed}: {wc.split}",
        code=code_version("plot-embeddings"),
    shell:
        "rbl plot-embeddings --embeddings {input.embeddings:q} --manifest {input.manifest:q} "
        "--taxonomy {input.taxonomy:q} --splits {input.splits:q} --split {wildcards.split:q} "
        "--title {params.title:q} --out {output:q} 2> {log:q}"


rule plot_training:
    input:
        lambda wc: [
            f"{RESULTS}/models/{wc.exp}/seed{seed}/history.csv"
            for seed in seeds_of(wc.exp)
        ],
    output:
        report(
            f"{RESULTS}/plots/training/{{exp}}.png",
            caption="../report/training.rst",
            category="Training",
            labels={"experiment": "{exp}"},
        ),
    log:
        f"{RESULTS}/logs/plots/training/{{exp}}.log",
    conda:
        ENV
    params:
        # shell text, quoted here
        names=lambda wc: shlex.join(f"{wc.exp}/seed{seed}" for seed in seeds_of(wc.exp)),
        collapse=config["train"]["collapse_spread"],
        code=code_version("plot-training"),
    shell:
        "rbl plot-training --histories {input:q} --names {params.names} "
        "--collapse-spread {params.collapse:q} --out {output:q} 2> {log:q}"


rule summarise:
    input:
        metrics=all_metrics,
        histories=all_histories,
    output:
        long=report(
            f"{RESULTS}/metrics.csv",
            caption="../report/metrics_long.rst",
            category="Results",
            labels={"table": "all runs"},
        ),
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="Results",
            labels={"table": "summary"},
        ),
        md=f"{RESULTS}/summary.md",
        plot=report(
            f"{RESULTS}/plots/metrics.png",
            caption="../report/metric_bars.rst",
            category="Results",
            labels={"table": "metrics chart"},
        ),
    log:
        f"{RESULTS}/logs/summarise.log",
    conda:
        ENV
    params:
        title=f"RbL results: {DATASET['name']}",
        names=lambda wc: shlex.join(run_names()),  # shell text, quoted here
        collapse=config["train"]["collapse_spread"],
        code=code_version("summarise"),
    shell:
        "rbl summarise --metrics {input.metrics:q} --title {params.title:q} "
        "--histories {input.histories:q} --names {params.names} "
        "--collapse-spread {params.collapse:q} --out-long {output.long:q} "
        "--out-csv {output.csv:q} --out-md {output.md:q} --out-plot {output.plot:q} > {log:q} 2>&1"


rule provenance:
    input:
        manifest=f"{RESULTS}/manifest.csv",
        info=f"{RESULTS}/features/{EXTRACTOR}.json",
    output:
        json=f"{RESULTS}/provenance.json",
        md=report(
            f"{RESULTS}/provenance.md",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        f"{RESULTS}/logs/provenance.log",
    conda:
        ENV
    params:
        config=json.dumps(config, sort_keys=True),
        code=code_version("provenance"),
    shell:
        "rbl provenance --config {params.config:q} --manifest {input.manifest:q} "
        "--features-info {input.info:q} --out-json {output.json:q} --out-md {output.md:q} 2> {log:q}"
