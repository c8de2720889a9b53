FEATURES = config["features"]
SHARDS = FEATURES["shards"]


rule extract:
    input:
        f"{RESULTS}/manifest.csv",
    output:
        features=temp(f"{RESULTS}/features/shards/{EXTRACTOR}.{{shard}}.npy"),
        info=temp(f"{RESULTS}/features/shards/{EXTRACTOR}.{{shard}}.json"),
    log:
        f"{RESULTS}/logs/extract/{{shard}}.log",
    conda:
        ENV
    threads: FEATURES["workers"]
    resources:
        gpu=FEATURES["gpus"],
    params:
        settings=extractor_args(),
        weights=weights_params(),
        shards=SHARDS,
        code=code_version("extract"),
        # The last gather's matrix and its index, looked up before the per-clip cache (rbl.previous);
        # not inputs: this job's own results feed them, and absent or stale ones are not used.
        previous=f"{RESULTS}/features/{EXTRACTOR}.npy",
        previous_index=f"{RESULTS}/features/{EXTRACTOR}.index.npz",
    shell:
        "rbl extract --manifest {input:q} {params.settings} --workers {threads} "
        "--shard {wildcards.shard:q} --shards {params.shards:q} "
        "--previous {params.previous:q} --previous-index {params.previous_index:q} "
        "--out {output.features:q} --info {output.info:q} 2> {log:q}"


rule gather_features:
    input:
        manifest=f"{RESULTS}/manifest.csv",
        parts=expand(
            f"{RESULTS}/features/shards/{EXTRACTOR}.{{shard}}.npy", shard=range(SHARDS)
        ),
        infos=expand(
            f"{RESULTS}/features/shards/{EXTRACTOR}.{{shard}}.json",
            shard=range(SHARDS),
        ),
    output:
        features=f"{RESULTS}/features/{EXTRACTOR}.npy",
        info=f"{RESULTS}/features/{EXTRACTOR}.json",
        # which clip each row of features is, for the next extraction (rbl.previous)
        index=f"{RESULTS}/features/{EXTRACTOR}.index.npz",
        # Clips left out by features.on_error: skip (file, reason); the split stage marks them.
        skipped=f"{RESULTS}/skipped.csv",
    log:
        f"{RESULTS}/logs/gather_features.log",
    conda:
        ENV
    params:
        code=code_version("gather"),
    shell:
        "rbl gather --manifest {input.manifest:q} --parts {input.parts:q} --infos {input.infos:q} "
        "--out {output.features:q} --info {output.info:q} --index {output.index:q} "
        "--skipped {output.skipped:q} 2> {log:q}"


rule normalise:
    input:
        features=f"{RESULTS}/features/{EXTRACTOR}.npy",
        manifest=f"{RESULTS}/manifest.csv",
        splits=f"{RESULTS}/splits.csv",
    output:
        f"{RESULTS}/features/{EXTRACTOR}.norm.npz",
    log:
        f"{RESULTS}/logs/normalise.log",
    conda:
        ENV
    params:
        code=code_version("normalise"),
    shell:
        "rbl normalise --features {input.features:q} --manifest {input.manifest:q} "
        "--splits {input.splits:q} --out {output:q} 2> {log:q}"
