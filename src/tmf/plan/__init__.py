"""The workflow's plan: every job of a configuration, its output paths, its inputs and exactly the parameters
it depends on, checked before any job runs (torch-free: the Snakefile imports it).

``paths`` (where files live), ``names`` (protocols, baselines, encoders), ``checks`` (what the schema cannot
say), ``job`` (a :class:`Job`), ``jobs`` (the :class:`Plan`), ``report`` (its report stage), ``items`` (the report's
figures and tables).
"""

from tmf.plan.jobs import Job, Plan, as_json
from tmf.plan.names import (
    BASELINES,
    ENCODER_BASELINES,
    FINETUNE_PROTOCOLS,
    FIXMATCH_PROTOCOL,
    HEAD_PROTOCOLS,
    MODAL_PROTOCOLS,
    PROBE_PROTOCOLS,
    PROTOCOLS,
    SCENE_PROTOCOLS,
    SEGNET_PROTOCOL,
    SEMISUPERVISED_BASELINES,
    SEMISUPERVISED_LOSS,
    TRAINED_BASELINES,
    architecture,
    fraction_tag,
    head_protocol,
    is_ssl,
    modal_protocol,
    runs,
    runs_subset,
    semisup_term,
    split_modal,
    split_protocol,
)

__all__ = ["BASELINES", "ENCODER_BASELINES", "FINETUNE_PROTOCOLS", "FIXMATCH_PROTOCOL", "HEAD_PROTOCOLS",
           "MODAL_PROTOCOLS", "PROBE_PROTOCOLS", "PROTOCOLS", "SCENE_PROTOCOLS", "SEGNET_PROTOCOL",
           "SEMISUPERVISED_BASELINES", "SEMISUPERVISED_LOSS", "TRAINED_BASELINES", "Job", "Plan", "architecture",
           "as_json", "fraction_tag", "head_protocol", "is_ssl", "modal_protocol", "runs", "runs_subset",
           "semisup_term", "split_modal", "split_protocol"]
