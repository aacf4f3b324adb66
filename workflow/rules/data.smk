# download or generate → index and check every tile → tinyMiniFrance subsampling → packed training arrays


localrules:
    fetch,


rule generate:
    output:
        directory("data/raw/synthetic"),
    params:
        cfg=lambda w: as_json({"source": "synthetic", "synthetic": config["data"]["synthetic"]}),
    log:
        "logs/data/generate.log",
    benchmark:
        "benchmarks/data/generate.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "tmf generate --out {output} --cfg {params.cfg:q} > {log} 2>&1"


rule fetch:
    output:
        directory("data/raw/{source}"),
    wildcard_constraints:
        source="minifrance|dfc2022",
    params:
        cfg=lambda w: as_json({k: config["data"][k] for k in ("source", "url", "extract")}),
        # Outside the output folder, which Snakemake deletes when a job fails: a new attempt resumes from here.
        cache="data/.download",
    log:
        "logs/data/fetch_{source}.log",
    resources:
        mem_mb=2000,
        runtime=600,
    conda:
        SOFTWARE
    shell:
        "tmf fetch --out {output} --cache {params.cache} --cfg {params.cfg:q} > {log} 2>&1"


rule index_tiles:
    input:
        RAW,
    output:
        "data/tiles.csv",
    params:
        cfg=lambda w: as_json({"missing_label": config["data"]["missing_label"]}),
    log:
        "logs/data/index_tiles.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "tmf index --root {input} --out {output} --workers {threads} --cfg {params.cfg:q} > {log} 2>&1"


rule subsample:
    input:
        tiles="data/tiles.csv",
        raw=RAW,
    output:
        manifest=MANIFEST,
        shares=f"{TINY}/class_shares.csv",
        crops=[directory(f"{TINY}/{split}") for split in ("labeled", "unlabeled", "test")],
    params:
        cfg=lambda w: as_json(config["subsample"]),
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        "logs/data/subsample.log",
    benchmark:
        "benchmarks/data/subsample.tsv"
    threads: 16  # at most --cores locally; the cluster profiles set their own
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        SOFTWARE
    shell:
        "tmf subsample --tiles {input.tiles} --root {input.raw} --out {params.out} --workers {threads} "
        "--cfg {params.cfg:q} > {log} 2>&1"


rule pack:
    input:
        manifest=MANIFEST,
        crops=rules.subsample.output.crops,
    output:
        images=PACKED_IMAGES,
        labels=PACKED_LABELS,
    params:
        out=lambda w, output: os.path.dirname(output.images),
    log:
        "logs/data/pack.log",
    threads: 16  # at most --cores locally; the cluster profiles set their own
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "tmf pack --manifest {input.manifest} --out {params.out} --workers {threads} > {log} 2>&1"
