def all_metrics(wildcards=None):
    return [
        f"{RESULTS}/metrics/{exp}/seed{seed}.json"
        for exp in config["experiments"]
        for seed in seeds_of(exp)
    ]


rule evaluate:
    input:
        embeddings=f"{RESULTS}/embeddings/{{exp}}/seed{{seed}}.npz",
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
        splits=f"{RESULTS}/splits.csv",
        info=f"{RESULTS}/features/{EXTRACTOR}.json",
    output:
        f"{RESULTS}/metrics/{{exp}}/seed{{seed}}.json",
    params:
        dataset=DATASET["name"],
        code=code_version("metrics", "taxonomy"),
    log:
        f"{RESULTS}/logs/evaluate/{{exp}}/seed{{seed}}.log",
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
    params:
        title=f"RbL results: {DATASET['name']}",
        code=code_version("summary"),
    log:
        f"{RESULTS}/logs/summarise.log",
    shell:
        "rbl summarise --metrics {input} --title '{params.title}' "
        "--out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
