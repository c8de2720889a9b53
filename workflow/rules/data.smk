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
            "rbl convert-authors --dir {params.folder:q} --out-annotations {output.annotations:q} "
            "--out-taxonomy {output.taxonomy:q} 2> {log:q}"


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
        # shell text, quoted here
        root=shlex.join(
            ["--features-dir" if PRECOMPUTED else "--audio-root", CLIP_ROOT]
        ),
        # the clips' content: any change reruns ingest (clip_state, common.smk)
        clips=clip_state(),
        hashes=CLIP_HASHES,
        code=code_version("ingest"),
    shell:
        "rbl ingest --taxonomy {input.taxonomy:q} --annotations {input.annotations:q} "
        "{params.root} --hashes {params.hashes:q} --out-manifest {output.manifest:q} "
        "--out-taxonomy {output.taxonomy:q} 2> {log:q}"


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
        "rbl split --manifest {input.manifest:q} --taxonomy {input.taxonomy:q} "
        "--unseen-per-parent {params.unseen:q} --fractions {params.fractions:q} "
        "--seed {params.seed:q} --skipped {input.skipped:q} --out {output:q} 2> {log:q}"
