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
        code=code_version("metrics", "taxonomy"),
    shell:
        "rbl evaluate --embeddings {input.embeddings} --manifest {input.manifest} "
        "--taxonomy {input.taxonomy} --splits {input.splits} --features-info {input.info} "
        "--dataset {params.dataset} --experiment {wildcards.exp} --seed {wildcards.seed} "
        "--out {output} 2> {log}"


rule summarise:
    input:
        all_metrics,
    output:
        csv=f"{RESULTS}/summary.csv",
        md=f"{RESULTS}/summary.md",
    log:
        f"{RESULTS}/logs/summarise.log",
    conda:
        ENV
    params:
        title=f"RbL results: {DATASET['name']}",
        code=code_version("summary"),
    shell:
        "rbl summarise --metrics {input} --title '{params.title}' "
        "--out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
