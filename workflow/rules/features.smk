FEATURES = config["features"]


if PRECOMPUTED:

    rule gather_features:
        input:
            f"{RESULTS}/manifest.csv",
        output:
            features=f"{RESULTS}/features/precomputed.npy",
            info=f"{RESULTS}/features/precomputed.json",
        log:
            f"{RESULTS}/logs/extract.log",
        conda:
            ENV
        params:
            code=code_version("features"),
        shell:
            "rbl extract --manifest {input} --extractor precomputed --weights-dir none "
            "--download false --final-relu true --verify true --batch-clips 1 --workers 1 "
            "--device cpu --cache-dir none --out {output.features} --info {output.info} 2> {log}"

else:

    rule extract:
        input:
            f"{RESULTS}/manifest.csv",
        output:
            features=f"{RESULTS}/features/{EXTRACTOR}.npy",
            info=f"{RESULTS}/features/{EXTRACTOR}.json",
        log:
            f"{RESULTS}/logs/extract.log",
        conda:
            ENV
        threads: FEATURES["workers"]
        params:
            extractor=EXTRACTOR,
            weights=FEATURES["vggish"]["weights_dir"],
            download=FEATURES["vggish"]["download"],
            final_relu=FEATURES["vggish"]["final_relu"],
            verify=FEATURES["vggish"]["verify"],
            batch=FEATURES["batch_clips"],
            device=FEATURES["device"],
            cache=FEATURES["cache_dir"],
            code=code_version("features", "audio", "vggish"),
        shell:
            "rbl extract --manifest {input} --extractor {params.extractor} "
            "--weights-dir {params.weights} --download {params.download} "
            "--final-relu {params.final_relu} --verify {params.verify} --batch-clips {params.batch} --workers {threads} "
            "--device {params.device} --cache-dir {params.cache} "
            "--out {output.features} --info {output.info} 2> {log}"


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
        "rbl normalise --features {input.features} --manifest {input.manifest} "
        "--splits {input.splits} --out {output} 2> {log}"
