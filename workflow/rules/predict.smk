# Land-cover maps: one job per split of predict.splits, with the model the evaluation job named by predict.*
# saved (rule evaluate_model); then one preview figure per city. One job per split, not per city: the cities of
# real data are known only once the tiles are indexed (tmf.predict.run).


if PLAN.jobs("predict"):

    localrules:
        map_previews,

    rule predict:
        input:
            unpack(job_input("predict")),
        output:
            index=report(
                job_output("predict")["index"],
                caption="../report/maps_index.rst",
                category="Maps",
                subcategory="{split}",
                labels={"split": "{split}", "table": "every map"},
            ),
            maps=directory(job_output("predict")["maps"]),
        params:
            **job_params("predict"),
        log:
            "logs/predict/{split}.log",
        benchmark:
            "benchmarks/predict/{split}.tsv"
        threads: config["threads"]
        priority: 5  # a minute of maps before the report: not the last job to start (workflow/rules/pretrain.smk)
        resources:
            mem_mb=6000,
            runtime=240,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            SOFTWARE
        shell:
            "tmf predict --tiles {input.tiles} --root {input.raw} --split {wildcards.split} --model {input.model} "
            "--out {output.maps} --index {output.index} --device {params.device} --threads {threads} "
            "--cfg {params.cfg:q} > {log} 2>&1"

    rule map_previews:
        input:
            unpack(job_input("map_previews")),
        output:
            previews=report(
                directory(job_output("map_previews")["previews"]),
                patterns=["{city}.png"],
                caption="../report/evaluation_map_previews.rst",
                category="Maps",
                subcategory="{split}",
                labels={"split": "{split}", "city": "{city}"},
            ),
        params:
            **job_params("map_previews"),
        log:
            "logs/predict/{split}_previews.log",
        conda:
            SOFTWARE
        shell:
            "tmf map-previews --index {input.index} --root {input.raw} --out {output.previews} "
            "--tiles-per-city {params.tiles} --dpi {params.dpi} > {log} 2>&1"
