# One job per (protocol, method, label fraction, seed) — the plan is tmf.plan — then one table. The job named by
# predict.* runs as evaluate_model: the same job, also writing model.pt for the maps (workflow/rules/predict.smk).
localrules:
    collect_evaluation,


rule evaluate:
    input:
        unpack(job_input("evaluate")),
    output:
        metrics=job_output("evaluate")["metrics"],
        predictions=report(
            job_output("evaluate")["predictions"],
            caption="../report/evaluation_predictions.rst",
            category="Evaluation",
            subcategory="{protocol}",
            labels={"method": "{method}", "label fraction": "{fraction}", "seed": "{seed}"},
        ),
    params:
        **job_params("evaluate"),
        packed=lambda w, input: os.path.dirname(input.images),
        out=lambda w, output: os.path.dirname(output.metrics),
        # derived from the outputs, so not compared by Snakemake: naming another job in predict.* re-runs only it
        save=lambda w, output: f"--save-model {output.model}" if "model" in output.keys() else "",
    log:
        "logs/evaluate/{protocol}/{method}/frac{fraction}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{protocol}/{method}/frac{fraction}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        SOFTWARE
    shell:
        "tmf evaluate --protocol {wildcards.protocol} --method {wildcards.method} --fraction {wildcards.fraction} "
        "--seed {wildcards.seed} --manifest {input.manifest} --packed {params.packed} --encoder {params.encoder} "
        "--out {params.out} {params.save} --device {params.device} --threads {threads} --cfg {params.cfg:q} "
        "> {log} 2>&1"


if PLAN.jobs("evaluate_model"):  # predict.enabled: the evaluation job predict.* names also saves its model

    use rule evaluate as evaluate_model with:
        output:
            metrics=job_output("evaluate_model")["metrics"],
            predictions=report(
                job_output("evaluate_model")["predictions"],
                caption="../report/evaluation_predictions.rst",
                category="Evaluation",
                subcategory="{protocol}",
                labels={"method": "{method}", "label fraction": "{fraction}", "seed": "{seed}"},
            ),
            model=job_output("evaluate_model")["model"],
        wildcard_constraints:
            **only_job("evaluate_model"),

    ruleorder: evaluate_model > evaluate


rule collect_evaluation:
    input:
        unpack(job_input("collect_evaluation")),
    output:
        summary=report(
            job_output("collect_evaluation")["summary"],
            caption="../report/evaluation_summary.rst",
            category="Evaluation",
            labels={"table": "every run"},
        ),
        aggregate=report(
            job_output("collect_evaluation")["aggregate"],
            caption="../report/evaluation_summary_agg.rst",
            category="Evaluation",
            labels={"table": "mean ± std over seeds"},
        ),
        # with the multi-modal protocols: the pretraining x downstream modalities grid (seed 000 Table 4.3)
        **{
            key: report(
                path,
                caption="../report/evaluation_modality_grid.rst",
                category="Evaluation",
                labels={"table": "modalities (Table 4.3)"},
            )
            for key, path in job_output("collect_evaluation").items()
            if key == "grid"
        },
    params:
        **job_params("collect_evaluation"),
    log:
        "logs/evaluate/collect.log",
    conda:
        SOFTWARE
    shell:
        "tmf collect --inputs {input.metrics} --out {output.summary} {params.grid:q} > {log} 2>&1"
