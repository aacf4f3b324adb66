# tmf: self-supervised learning on MiniFrance / tinyMiniFrance, from raw tiles to a report.
#   snakemake --cores all                                   # embedded synthetic data (params/default.yaml)
#   snakemake --cores all --configfile params/minifrance.yaml   # the real study
from snakemake.utils import min_version

min_version("9.0")


configfile: "params/default.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/appearance.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/dvc.smk"


rule all:
    default_target: True
    input:
        "reports/index.html",
        *DVC_TRACKED,
