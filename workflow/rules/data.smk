# download or generate → index and check every tile → tinyMiniFrance subsampling → packed training arrays
# (with the elevation arrays where data.source has a DEM: the plan's pack outputs, tmf.plan.paths)


localrules:
    fetch,


rule generate:
    output:
        raw=directory(job_output("generate")["raw"]),
    params:
        **job_params("generate"),
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
        "tmf generate --out {output.raw} --cfg {params.cfg:q} > {log} 2>&1"


rule fetch:
    output:
        raw=directory(job_output("fetch")["raw"]),
    wildcard_constraints:
        source="minifrance|dfc2022",
    params:
        **job_params("fetch"),
    log:
        "logs/data/fetch_{source}.log",
    resources:
        mem_mb=2000,
        runtime=600,
    conda:
        SOFTWARE
    shell:
        "tmf fetch --out {output.raw} --cache {params.cache} --cfg {params.cfg:q} > {log} 2>&1"


rule index_tiles:
    input:
        unpack(job_input("index_tiles")),
    output:
        **job_output("index_tiles"),
    params:
        **job_params("index_tiles"),
    log:
        "logs/data/index_tiles.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "tmf index --root {input.raw} --out {output.tiles} --workers {threads} --cfg {params.cfg:q} > {log} 2>&1"


rule subsample:
    input:
        unpack(job_input("subsample")),
    output:
        manifest=job_output("subsample")["manifest"],
        shares=job_output("subsample")["shares"],
        crops=[directory(d) for d in job_output("subsample")["crops"]],
    params:
        **job_params("subsample"),
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
        "--dem {params.dem} --cfg {params.cfg:q} > {log} 2>&1"


rule pack:
    input:
        unpack(job_input("pack")),
    output:
        **job_output("pack"),
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
