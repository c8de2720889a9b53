rule ingest:
    input:
        annotations=DATASET["annotations"],
        taxonomy=DATASET["taxonomy"],
        audio=audio_inputs,
    output:
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
    log:
        f"{RESULTS}/logs/ingest.log",
    conda:
        ENV
    params:
        root=DATASET["audio_root"],
        code=code_version("data", "taxonomy"),
    shell:
        "rbl ingest --taxonomy {input.taxonomy} --annotations {input.annotations} "
        "--audio-root {params.root} --out-manifest {output.manifest} "
        "--out-taxonomy {output.taxonomy} 2> {log}"


rule split:
    input:
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
    output:
        f"{RESULTS}/splits.csv",
    log:
        f"{RESULTS}/logs/split.log",
    conda:
        ENV
    params:
        seed=config["split"]["seed"],
        unseen=config["split"]["unseen_per_parent"],
        fractions=",".join(f"{k}={v}" for k, v in config["split"]["fractions"].items()),
        code=code_version("split", "data"),
    shell:
        "rbl split --manifest {input.manifest} --taxonomy {input.taxonomy} "
        "--unseen-per-parent {params.unseen} --fractions {params.fractions} "
        "--seed {params.seed} --out {output} 2> {log}"
