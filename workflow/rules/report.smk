# The report: per notebook (tmf.plan.paths.NOTEBOOKS) one job drawing its figures and tables, each a file of
# reports/<part>/ in snakemake --report (report_items_<part>), then the notebook showing those files
# (report_<part>: papermill → HTML without code), and last reports/index.html (findings, notebooks, ours vs
# published). Report rules depend only on the `report` params section and on their inputs' files (tmf.plan).
#
# To add a figure or a table: a function named as the item in tmf/report/figures.py or tables.py, an entry in
# tmf.report.items.ITEMS, its caption workflow/report/<part>_<name>.rst, and `show("<name>")` in the notebook. The
# plan gives it its file, these rules draw it and wrap it in report() with that caption and the item's category;
# nothing here changes.


for _part in NOTEBOOKS:

    rule:
        name:
            f"report_items_{_part}"
        localrule: True
        input:
            unpack(job_input(f"report_items_{_part}")),
        output:
            **report_outputs(f"report_items_{_part}"),
        params:
            **job_params(f"report_items_{_part}"),
        log:
            f"logs/report/items_{_part}.log",
        conda:
            SOFTWARE
        shell:
            "tmf report-items --out-dir {params.out_dir} --cfg {params.cfg:q} > {log} 2>&1"

    rule:
        name:
            f"report_{_part}"
        localrule: True
        input:
            unpack(job_input(f"report_{_part}")),
        output:
            html=report(
                job_output(f"report_{_part}")["html"],
                caption=f"../report/notebook_{_part}.rst",
                category="Notebooks",
                labels={"notebook": REPORT_PAGES[_part][0]},
            ),
            ipynb=job_output(f"report_{_part}")["ipynb"],
        params:
            **job_params(f"report_{_part}"),
        log:
            f"logs/report/{_part}.log",
        conda:
            SOFTWARE
        shell:
            "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
            "--parameters {params.nb:q} > {log} 2>&1"


rule report_index:
    localrule: True
    input:
        unpack(job_input("report_index")),
    output:
        **job_output("report_index"),
    params:
        **job_params("report_index"),
    log:
        "logs/report/index.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-index --out {output.index} --source {params.source} {params.pages:q} {params.tables:q} "
        "{params.summaries:q} --evaluation {input.evaluation} > {log} 2>&1"
