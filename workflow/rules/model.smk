NORMALISED = f"{RESULTS}/features/{EXTRACTOR}.norm.npz"


rule train:
    input:
        features=NORMALISED,
        manifest=f"{RESULTS}/manifest.csv",
        taxonomy=f"{RESULTS}/taxonomy.csv",
        splits=f"{RESULTS}/splits.csv",
    output:
        model=f"{RESULTS}/models/{{exp}}/seed{{seed}}/model.pt",
        history=f"{RESULTS}/models/{{exp}}/seed{{seed}}/history.csv",
    log:
        f"{RESULTS}/logs/train/{{exp}}/seed{{seed}}.log",
    conda:
        ENV
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    params:
        flags=lambda wc: train_flags(wc.exp),
        device=config["train"]["device"],
        collapse=config["train"]["collapse_spread"],
        # Not an output: Snakemake deletes a job's outputs before rerunning it.
        resume=f"{RESULTS}/resume/{{exp}}/seed{{seed}}.pt",
        every=config["train"]["checkpoint_every"],
        code=code_version(
            "train", "experiment", "losses", "model", "sampling", "metrics", "taxonomy"
        ),
    shell:
        "rbl train --features {input.features} --manifest {input.manifest} "
        "--taxonomy {input.taxonomy} --splits {input.splits} --seed {wildcards.seed} "
        "--device {params.device} --threads {threads} {params.flags} "
        "--collapse-spread {params.collapse} --resume {params.resume} "
        "--checkpoint-every {params.every} --out {output.model} "
        "--history {output.history} 2> {log}"


rule embed:
    input:
        unpack(embed_inputs),
    output:
        f"{RESULTS}/embeddings/{{exp}}/seed{{seed}}.npz",
    log:
        f"{RESULTS}/logs/embed/{{exp}}/seed{{seed}}.log",
    conda:
        ENV
    params:
        checkpoint=lambda wc, input: (
            f"--checkpoint {input.checkpoint}" if "checkpoint" in input.keys() else ""
        ),
        device=config["train"]["device"],
        code=code_version("model", "train"),
    shell:
        "rbl embed --features {input.features} {params.checkpoint} "
        "--device {params.device} --out {output} 2> {log}"
