# Appearance analysis, one per encoder (seed 004 §2.4–2.6): encode → t-SNE per seed → one-class SVM surfaces and
# IoU / intersection-over-test → figures; class representativeness does not depend on the encoder.


localrules:
    appearance_figures,
    class_representativeness,


rule appearance_encode:
    input:
        unpack(job_input("appearance_encode")),
    output:
        **job_output("appearance_encode"),
    params:
        **job_params("appearance_encode"),
        weights=lambda w, input: f"--weights {input.weights}" if "weights" in input.keys() else "",
    log:
        "logs/appearance/{encoder}/encode.log",
    benchmark:
        "benchmarks/appearance/{encoder}/encode.tsv"
    threads: config["threads"]
    priority: 5  # the appearance chain (encode → t-SNE seeds → scores → figures) ends the DAG: start it early
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        SOFTWARE
    shell:
        "tmf appearance-encode --encoder {wildcards.encoder} --manifest {input.manifest} --packed {input.images} "
        "--out {output.features} {params.weights} --device {params.device} --threads {threads} "
        "--cfg {params.cfg:q} > {log} 2>&1"


rule appearance_embed:
    input:
        unpack(job_input("appearance_embed")),
    output:
        **job_output("appearance_embed"),
    params:
        **job_params("appearance_embed"),
    log:
        "logs/appearance/{encoder}/embed_seed{seed}.log",
    threads: 1
    priority: 5
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "tmf appearance-embed --features {input.features} --seed {wildcards.seed} --out {output.embedding} "
        "--cfg {params.cfg:q} > {log} 2>&1"


rule appearance_score:
    input:
        unpack(job_input("appearance_score")),
    output:
        **job_output("appearance_score"),
    params:
        **job_params("appearance_score"),
        out=lambda w, output: os.path.dirname(output.summary),
    log:
        "logs/appearance/{encoder}/score.log",
    benchmark:
        "benchmarks/appearance/{encoder}/score.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "tmf appearance-score --manifest {input.manifest} --embeddings {input.embeddings} --out-dir {params.out} "
        "--encoder {wildcards.encoder} --encoder-info {input.info} --cfg {params.cfg:q} > {log} 2>&1"


rule appearance_figures:
    input:
        unpack(job_input("appearance_figures")),
    output:
        **{
            name: report(
                path,
                caption=f"../report/appearance_{name}.rst",
                category="Appearance",
                subcategory="{encoder}",
                labels={"encoder": "{encoder}", "figure": name.replace("_", " ")},
            )
            for name, path in job_output("appearance_figures").items()
        },
    params:
        **job_params("appearance_figures"),
        dir=lambda w, input: os.path.dirname(input.summary),
        overlay=lambda w, input: f"--overlay {input.overlay}" if "overlay" in input.keys() else "",
    log:
        "logs/appearance/{encoder}/figures.log",
    conda:
        SOFTWARE
    shell:
        "tmf appearance-figures --manifest {input.manifest} --dir {params.dir} --dpi {params.dpi} {params.overlay} "
        "> {log} 2>&1"


if PLAN.jobs("appearance_overlay"):  # Fig. 2.18 only when appearance.overlay_dir names a folder of GeoTIFFs

    rule appearance_overlay:
        input:
            unpack(job_input("appearance_overlay")),
        output:
            **job_output("appearance_overlay"),
        params:
            **job_params("appearance_overlay"),
            weights=lambda w, input: f"--weights {input.weights}" if "weights" in input.keys() else "",
        log:
            "logs/appearance/{encoder}/overlay.log",
        threads: config["threads"]
        resources:
            mem_mb=6000,
            runtime=60,
        conda:
            SOFTWARE
        shell:
            "tmf appearance-overlay --encoder {wildcards.encoder} --manifest {input.manifest} --packed {input.images} "
            "--features {input.features} --out {output.overlay} {params.weights} --device {params.device} "
            "--threads {threads} --cfg {params.cfg:q} > {log} 2>&1"


rule class_representativeness:
    input:
        unpack(job_input("class_representativeness")),
    output:
        city=job_output("class_representativeness")["city"],
        split=job_output("class_representativeness")["split"],
        colours=job_output("class_representativeness")["colours"],
        figures=[
            report(
                path,
                caption=f"../report/appearance_{Path(path).stem}.rst",
                category="Data",
                labels={"figure": Path(path).stem.replace("_", " ")},
            )
            for path in job_output("class_representativeness")["figures"]
        ],
    params:
        **job_params("class_representativeness"),
        out=lambda w, output: os.path.dirname(output.city),
    log:
        "logs/classes.log",
    conda:
        SOFTWARE
    shell:
        "tmf classes --manifest {input.manifest} --packed {input.images} --out-dir {params.out} --dpi {params.dpi} "
        "> {log} 2>&1"
