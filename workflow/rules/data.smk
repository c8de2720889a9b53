if "authors_csv_dir" in DATASET:

    rule convert_authors:
        input:
            # train.csv and val.csv, and test.csv once the folder has it (adding or removing it reruns).
            unpack(
                lambda wildcards: {
                    name: f"{DATASET['authors_csv_dir']}/{name}.csv"
                    for name in ("train", "val", "test")
                    if name != "test"
                    or os.path.isfile(f"{DATASET['authors_csv_dir']}/test.csv")
                }
            ),
        output:
            annotations=DATASET["annotations"],
            taxonomy=DATASET["taxonomy"],
        log:
            f"{RESULTS}/logs/convert_authors.log",
        conda:
            ENV
        params:
            folder=DATASET["authors_csv_dir"],
            code=code_version("convert-authors"),
        shell:
            "rbl convert-authors --dir {params.folder} --out-annotations {output.annotations} "
            "--out-taxonomy {output.taxonomy} 2> {log}"


rule ingest:
    input:
        annotations=DATASET["annotations"],
        taxonomy=DATASET["taxonomy"],
        clips=clip_inputs,
    output:
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
    log:
        f"{RESULTS}/logs/ingest.log",
    conda:
        ENV
    params:
        root=("--features-dir " if PRECOMPUTED else "--audio-root ") + CLIP_ROOT,
        # the clips' content: any change reruns ingest (clip_state, common.smk)
        clips=clip_state(),
        hashes=CLIP_HASHES,
        code=code_version("ingest"),
    shell:
        "rbl ingest --taxonomy {input.taxonomy} --annotations {input.annotations} "
        "{params.root} --hashes {params.hashes:q} --out-manifest {output.manifest} "
        "--out-taxonomy {output.taxonomy} 2> {log}"


rule split:
    input:
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
        # Clips extraction could not use (features.on_error: skip) take part in no split.
        skipped=f"{RESULTS}/skipped.csv",
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
        code=code_version("split"),
    shell:
        "rbl split --manifest {input.manifest} --taxonomy {input.taxonomy} "
        "--unseen-per-parent {params.unseen} --fractions {params.fractions} "
        "--seed {params.seed} --skipped {input.skipped} --out {output} 2> {log}"
