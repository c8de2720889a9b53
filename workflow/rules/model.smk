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
    params:
        flags=lambda wc: train_flags(wc.exp),
        device=config["train"]["device"],
        code=code_version("train", "losses", "model", "sampling", "metrics", "taxonomy"),
    log:
        f"{RESULTS}/logs/train/{{exp}}/seed{{seed}}.log",
    shell:
        "rbl train --features {input.features} --manifest {input.manifest} "
        "--taxonomy {input.taxonomy} --splits {input.splits} --seed {wildcards.seed} "
        "--device {params.device} {params.flags} --out {output.model} "
        "--history {output.history} 2> {log}"


def embed_inputs(wildcards):
    inputs = {"features": NORMALISED}
    if trained(wildcards.exp):
        inputs["checkpoint"] = f"{RESULTS}/models/{wildcards.exp}/seed{wildcards.seed}/model.pt"
    return inputs


rule embed:
    input:
        unpack(embed_inputs),
    output:
        f"{RESULTS}/embeddings/{{exp}}/seed{{seed}}.npz",
    params:
        checkpoint=lambda wc, input: (
            f"--checkpoint {input.checkpoint}" if "checkpoint" in input.keys() else ""
        ),
        device=config["train"]["device"],
        code=code_version("model", "train"),
    log:
        f"{RESULTS}/logs/embed/{{exp}}/seed{{seed}}.log",
    shell:
        "rbl embed --features {input.features} {params.checkpoint} "
        "--device {params.device} --out {output} 2> {log}"
