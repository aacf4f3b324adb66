# One job per (method, seed): self-supervised pretraining on the labeled + unlabeled cities.
# Priority: a pretraining job heads the longest chain of the DAG (its encoder's evaluations, appearance analysis
# and maps wait for it), so Snakemake starts it before any job that is ready beside it; without, the last
# pretraining job of the default ran after the baselines' evaluations while a core idled behind it.


rule pretrain:
    input:
        unpack(job_input("pretrain")),
    output:
        **job_output("pretrain"),
    params:
        **job_params("pretrain"),
        packed=lambda w, input: os.path.dirname(input.images),
        out=lambda w, output: os.path.dirname(output.encoder),
    log:
        "logs/pretrain/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/pretrain/{method}/seed{seed}.tsv"
    threads: config["threads"]
    priority: 10
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        SOFTWARE
    shell:
        "tmf pretrain --method {wildcards.method} --seed {wildcards.seed} --manifest {input.manifest} "
        "--packed {params.packed} --out {params.out} "
        "--device {params.device} --threads {threads} --cfg {params.cfg:q} > {log} 2>&1"
