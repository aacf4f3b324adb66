# papermill notebooks → HTML, one per part of the study, and reports/index.html linking them.
# Report rules depend only on the `report` params section and on their inputs' files.


localrules:
    report_data,
    report_pretraining,
    report_index,


rule report_data:
    input:
        notebook="workflow/notebooks/data.ipynb",
        tiles="data/tiles.csv",
        manifest=MANIFEST,
        shares=f"{TINY}/class_shares.csv",
        images=PACKED_IMAGES,
        labels=PACKED_LABELS,
    output:
        html="reports/notebooks/data.html",
        ipynb="reports/notebooks/data.ipynb",
    params:
        nb=lambda w, input: notebook_params(tiles=input.tiles, manifest=input.manifest,
                                            class_shares=input.shares, packed=f"{TINY}/packed"),
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
        html="reports/notebooks/pretraining.html",
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


REPORT_PAGES = [
    ("Data and tinyMiniFrance", "reports/notebooks/data.html",
     "tiles, sub-tiles and class shares vs Tables 2.4–2.6"),
    ("Pretraining", "reports/notebooks/pretraining.html",
     "loss curves and embedding diagnostics of every (method, seed)"),
]


rule report_index:
    input:
        pages=[p for _, p, _ in REPORT_PAGES],
        shares=f"{TINY}/class_shares.csv",
    output:
        "reports/index.html",
    params:
        source=SOURCE,
        pages=" ".join(f"--page {t!r} {p} {d!r}" for t, p, d in REPORT_PAGES),
    log:
        "logs/report/index.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-index --out {output} --source {params.source} --class-shares {input.shares} {params.pages} "
        "> {log} 2>&1"
