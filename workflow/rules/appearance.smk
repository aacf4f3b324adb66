# Appearance analysis, one per encoder (seed 004 §2.4–2.6): encode → t-SNE per seed → one-class SVM surfaces and
# IoU / intersection-over-test → figures; class representativeness does not depend on the encoder.

APPEARANCE_FIGURES = ["embedding_cities", "appearance_maps", "coverage_heatmaps", "split_maps", "class_scatter"]
CLASS_FIGURES = ["class_histograms_city", "class_histograms_split", "colour_histograms"]


localrules:
    appearance_figures,
    class_representativeness,


rule appearance_encode:
    input:
        unpack(appearance_encoder_inputs),
    output:
        features="results/appearance/{encoder}/features.npy",
        info="results/appearance/{encoder}/encoder.json",
    params:
        cfg=lambda w: appearance_params("weights", "random_init_seed", "feature_layer", "input_size", "batch_size"),
        weights=lambda w, input: f"--weights {input.weights}" if "weights" in input.keys() else "",
        device=DEVICE,
    log:
        "logs/appearance/{encoder}/encode.log",
    benchmark:
        "benchmarks/appearance/{encoder}/encode.tsv"
    threads: config["threads"]
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
        "results/appearance/{encoder}/features.npy",
    output:
        "results/appearance/{encoder}/embedding_seed{seed}.npy",
    params:
        cfg=lambda w: appearance_params("tsne"),
    log:
        "logs/appearance/{encoder}/embed_seed{seed}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        SOFTWARE
    shell:
        "tmf appearance-embed --features {input} --seed {wildcards.seed} --out {output} --cfg {params.cfg:q} "
        "> {log} 2>&1"


rule appearance_score:
    input:
        manifest=MANIFEST,
        info="results/appearance/{encoder}/encoder.json",
        embeddings=expand("results/appearance/{{encoder}}/embedding_seed{seed}.npy",
                          seed=config["appearance"]["seeds"]),
    output:
        summary="results/appearance/{encoder}/summary.json",
        coverage="results/appearance/{encoder}/coverage_summary.csv",
        splits="results/appearance/{encoder}/split_coverage_summary.csv",
        surfaces=expand("results/appearance/{{encoder}}/surfaces_seed{seed}.npz", seed=config["appearance"]["seeds"]),
    params:
        cfg=lambda w: appearance_params("svm", "grid_resolution", "grid_margin", "split_surface", "min_points"),
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
        unpack(appearance_figure_inputs),
    output:
        **{
            name: report(
                f"results/appearance/{{encoder}}/figures/{name}.png",
                caption=f"../report/appearance_{name}.rst",
                category="Appearance",
                subcategory="{encoder}",
                labels={"encoder": "{encoder}", "figure": name.replace("_", " ")},
            )
            for name in APPEARANCE_FIGURES + (["overlay"] if OVERLAY else [])
        },
    params:
        dir=lambda w, input: os.path.dirname(input.summary),
        dpi=config["report"]["dpi"],
        overlay=lambda w, input: f"--overlay {input.overlay}" if "overlay" in input.keys() else "",
    log:
        "logs/appearance/{encoder}/figures.log",
    conda:
        SOFTWARE
    shell:
        "tmf appearance-figures --manifest {input.manifest} --dir {params.dir} --dpi {params.dpi} {params.overlay} "
        "> {log} 2>&1"


if OVERLAY:

    rule appearance_overlay:
        input:
            unpack(appearance_encoder_inputs),
            features="results/appearance/{encoder}/features.npy",
        output:
            "results/appearance/{encoder}/overlay.npz",
        params:
            cfg=lambda w: appearance_params(
                "weights", "random_init_seed", "feature_layer", "input_size", "batch_size", "tsne", "seeds",
                "overlay_dir"
            ),
            weights=lambda w, input: f"--weights {input.weights}" if "weights" in input.keys() else "",
            device=DEVICE,
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
            "--features {input.features} --out {output} {params.weights} --device {params.device} "
            "--threads {threads} --cfg {params.cfg:q} > {log} 2>&1"


rule class_representativeness:
    input:
        manifest=MANIFEST,
        images=PACKED_IMAGES,
    output:
        city="results/classes/class_histograms_city.csv",
        split="results/classes/class_histograms_split.csv",
        colours="results/classes/colour_histograms.csv",
        figures=[
            report(
                f"results/classes/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Data",
                labels={"figure": name.replace("_", " ")},
            )
            for name in CLASS_FIGURES
        ],
    params:
        out=lambda w, output: os.path.dirname(output.city),
        dpi=config["report"]["dpi"],
    log:
        "logs/classes.log",
    conda:
        SOFTWARE
    shell:
        "tmf classes --manifest {input.manifest} --packed {input.images} --out-dir {params.out} --dpi {params.dpi} "
        "> {log} 2>&1"
