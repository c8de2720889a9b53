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
        flags=lambda wc: train_flags(wc.exp),  # shell text, quoted by train_flags
        device=config["train"]["device"],
        collapse=config["train"]["collapse_spread"],
        # Not an output: Snakemake deletes a job's outputs before rerunning it.
        resume=f"{RESULTS}/resume/{{exp}}/seed{{seed}}.pt",
        every=config["train"]["checkpoint_every"],
        code=code_version("train"),
    shell:
        "rbl train --features {input.features:q} --manifest {input.manifest:q} "
        "--taxonomy {input.taxonomy:q} --splits {input.splits:q} --seed {wildcards.seed:q} "
        "--device {params.device:q} --threads {threads} {params.flags} "
        "--collapse-spread {params.collapse:q} --resume {params.resume:q} "
        "--checkpoint-every {params.every:q} --out {output.model:q} "
        "--history {output.history:q} 2> {log:q}"


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
        # shell text, quoted here
        checkpoint=lambda wc, input: (
            shlex.join(["--checkpoint", input.checkpoint])
            if "checkpoint" in input.keys()
            else ""
        ),
        device=config["train"]["device"],
        code=code_version("embed"),
    shell:
        "rbl embed --features {input.features:q} {params.checkpoint} "
        "--device {params.device:q} --out {output:q} 2> {log:q}"
