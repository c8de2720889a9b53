if config["demo"].get("generate", False):

    rule demo_data:
        output:
            audio=directory(f"{config['demo']['out_dir']}/audio"),
            annotations=f"{config['demo']['out_dir']}/annotations.csv",
            taxonomy=f"{config['demo']['out_dir']}/taxonomy.csv",
        log:
            "results/logs/demo_data.log",
        conda:
            ENV
        params:
            out=lambda wildcards, output: os.path.dirname(output.annotations),
            clips=config["demo"]["clips_per_class"],
            seed=config["demo"]["seed"],
            code=code_version("demo"),
        shell:
            "rbl demo --out {params.out:q} --clips-per-class {params.clips:q} --seed {params.seed:q} 2> {log:q}"


if config["corpus"].get("generate", False):

    rule corpus_data:
        output:
            audio=directory(f"{config['corpus']['out_dir']}/audio"),
            annotations=f"{config['corpus']['out_dir']}/annotations.csv",
            taxonomy=f"{config['corpus']['out_dir']}/taxonomy.csv",
        log:
            f"{RESULTS}/logs/corpus_data.log",
        conda:
            ENV
        params:
            out=lambda wildcards, output: os.path.dirname(output.annotations),
            kind=config["corpus"]["kind"],
            clips=config["corpus"]["clips_per_class"],
            seed=config["corpus"]["seed"],
            code=code_version("corpus"),
        shell:
            "rbl --quiet corpus --kind {params.kind:q} --out {params.out:q} "
            "--clips-per-class {params.clips:q} --seed {params.seed:q} 2> {log:q}"
