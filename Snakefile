# tmf: self-supervised learning on MiniFrance / tinyMiniFrance, from raw tiles to a report.
#   snakemake --cores all                                       # the embedded default (params/default.yaml)
#   snakemake --cores all --configfile params/minifrance.yaml   # the real study
#
# Configuration. There is no `configfile:` directive: the --configfile files and --config values (merged by
# Snakemake, later ones winning) are laid over the base their top-level `base` key names:
#   base: embedded (the default)  params/default.yaml, the embedded synthetic data sized for a laptop; your own
#                                 file or --config overlays it (tests/configs/tiny.yaml, params/hyperbolic.yaml)
#   base: study                   nothing: the schema's defaults, which are the real study's
#                                 (params/minifrance.yaml sets it; add your file after it to change the study)
# Every parameter not given comes from the schema, workflow/schemas/params.schema.yaml (tmf.config).
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/appearance.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/dvc.smk"


rule all:
    default_target: True
    input:
        PLAN.targets,
