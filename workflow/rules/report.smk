# papermill notebooks → HTML, one per part of the study, and reports/index.html linking them.
# Report rules depend only on the `report` params section and on their inputs' files (tmf.plan).


localrules:
    report_data,
    report_appearance,
    report_pretraining,
    report_evaluation,
    report_index,


rule report_data:
    input:
        unpack(job_input("report_data")),
    output:
        html=report(
            job_output("report_data")["html"],
            caption="../report/notebook_data.rst",
            category="Notebooks",
            labels={"notebook": "Data and tinyMiniFrance"},
        ),
        ipynb=job_output("report_data")["ipynb"],
    params:
        **job_params("report_data"),
    log:
        "logs/report/data.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


rule report_pretraining:
    input:
        unpack(job_input("report_pretraining")),
    output:
        html=report(
            job_output("report_pretraining")["html"],
            caption="../report/notebook_pretraining.rst",
            category="Notebooks",
            labels={"notebook": "Pretraining"},
        ),
        ipynb=job_output("report_pretraining")["ipynb"],
    params:
        **job_params("report_pretraining"),
    log:
        "logs/report/pretraining.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


rule report_appearance:
    input:
        unpack(job_input("report_appearance")),
    output:
        html=report(
            job_output("report_appearance")["html"],
            caption="../report/notebook_appearance.rst",
            category="Notebooks",
            labels={"notebook": "Appearance analysis"},
        ),
        ipynb=job_output("report_appearance")["ipynb"],
    params:
        **job_params("report_appearance"),
    log:
        "logs/report/appearance.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


rule report_evaluation:
    input:
        unpack(job_input("report_evaluation")),
    output:
        html=report(
            job_output("report_evaluation")["html"],
            caption="../report/notebook_evaluation.rst",
            category="Notebooks",
            labels={"notebook": "Evaluation"},
        ),
        ipynb=job_output("report_evaluation")["ipynb"],
    params:
        **job_params("report_evaluation"),
    log:
        "logs/report/evaluation.log",
    conda:
        SOFTWARE
    shell:
        "tmf report-notebook --template {input.notebook} --html {output.html} --ipynb {output.ipynb} "
        "--parameters {params.nb:q} > {log} 2>&1"


rule report_index:
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
        "tmf report-index --out {output.index} --source {params.source} --class-shares {input.shares} "
        "{params.pages:q} {params.summaries:q} --evaluation {input.evaluation} > {log} 2>&1"
