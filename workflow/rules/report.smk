# papermill notebooks → HTML, one per part of the study, and reports/index.html linking them.
# Report rules depend only on the `report` params section and on their inputs' files. Their params are plain
# values, not functions of `input`: Snakemake does not compare such functions' values with the last run's, so a
# changed `report` section would not re-run them.


localrules:
    report_data,
    report_appearance,
    report_pretraining,
    report_evaluation,
    report_index,


rule report_data:
    input:
        notebook="workflow/notebooks/data.ipynb",
        tiles="data/tiles.csv",
        manifest=MANIFEST,
        class_shares=f"{TINY}/class_shares.csv",
        images=PACKED_IMAGES,
        labels=PACKED_LABELS,
    output:
        html=report(
            "reports/notebooks/data.html",
            caption="../report/notebook_data.rst",
            category="Notebooks",
            labels={"notebook": "Data and tinyMiniFrance"},
        ),
        ipynb="reports/notebooks/data.ipynb",
    params:
        nb=notebook_params(tiles="data/tiles.csv", manifest=MANIFEST, class_shares=f"{TINY}/class_shares.csv",
                           packed=f"{TINY}/packed"),
    log:
        "logs/report/data.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


PRETRAIN_RUNS = {f"{m}/seed{s}": f"results/pretrain/{m}/seed{s}" for m in config["pretrain"]["methods"]
                 for s in config["pretrain"]["seeds"]}


rule report_pretraining:
    input:
        notebook="workflow/notebooks/pretraining.ipynb",
        metrics=[f"{d}/metrics.json" for d in PRETRAIN_RUNS.values()],
        history=[f"{d}/history.csv" for d in PRETRAIN_RUNS.values()],
    output:
        html=report(
            "reports/notebooks/pretraining.html",
            caption="../report/notebook_pretraining.rst",
            category="Notebooks",
            labels={"notebook": "Pretraining"},
        ),
        ipynb="reports/notebooks/pretraining.ipynb",
    params:
        nb=notebook_params(runs=PRETRAIN_RUNS),
    log:
        "logs/report/pretraining.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


APPEARANCE_DIRS = {e: f"results/appearance/{e}" for e in config["appearance"]["encoders"]}


rule report_appearance:
    input:
        notebook="workflow/notebooks/appearance.ipynb",
        summaries=[f"{d}/summary.json" for d in APPEARANCE_DIRS.values()],
        figures=[f"{d}/figures/{n}.png" for d in APPEARANCE_DIRS.values() for n in APPEARANCE_FIGURES],
        classes=rules.class_representativeness.output,
    output:
        html=report(
            "reports/notebooks/appearance.html",
            caption="../report/notebook_appearance.rst",
            category="Notebooks",
            labels={"notebook": "Appearance analysis"},
        ),
        ipynb="reports/notebooks/appearance.ipynb",
    params:
        nb=notebook_params(encoders=APPEARANCE_DIRS, classes="results/classes"),
    log:
        "logs/report/appearance.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


rule report_evaluation:
    input:
        notebook="workflow/notebooks/evaluation.ipynb",
        summary="results/evaluate/summary.csv",
        aggregate="results/evaluate/summary_agg.csv",
        runs=[f"{out}/metrics.json" for out in EVAL_JOBS],
    output:
        html=report(
            "reports/notebooks/evaluation.html",
            caption="../report/notebook_evaluation.rst",
            category="Notebooks",
            labels={"notebook": "Evaluation"},
        ),
        ipynb="reports/notebooks/evaluation.ipynb",
    params:
        nb=notebook_params(summary="results/evaluate/summary.csv", aggregate="results/evaluate/summary_agg.csv",
                           runs=[f"{out}/metrics.json" for out in EVAL_JOBS]),
    log:
        "logs/report/evaluation.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


REPORT_PAGES = [
    ("Data and tinyMiniFrance", "reports/notebooks/data.html",
     "tiles, sub-tiles and class shares vs Tables 2.4–2.6"),
    ("Appearance analysis", "reports/notebooks/appearance.html",
     "t-SNE + one-class SVM coverage of the test cities by the training cities, vs Table 2.7"),
    ("Pretraining", "reports/notebooks/pretraining.html",
     "loss curves and embedding diagnostics of every (method, seed)"),
    ("Evaluation", "reports/notebooks/evaluation.html",
     "segmentation of the test cities for every protocol × method × label fraction, vs Table 3.1"),
]


rule report_index:
    input:
        pages=[p for _, p, _ in REPORT_PAGES],
        shares=f"{TINY}/class_shares.csv",
        summaries=[f"{d}/summary.json" for d in APPEARANCE_DIRS.values()],
        evaluation="results/evaluate/summary_agg.csv",
    output:
        "reports/index.html",
    params:
        source=SOURCE,
        pages=" ".join(f"--page {t!r} {p} {d!r}" for t, p, d in REPORT_PAGES),
        summaries=" ".join(f"--appearance-summary {d}/summary.json" for d in APPEARANCE_DIRS.values()),
    log:
        "logs/report/index.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-index --out {output} --source {params.source} --class-shares {input.shares} {params.pages} "
        "{params.summaries} --evaluation {input.evaluation} "
        "> {log} 2>&1"
