"""The workflow's plan: every job of a configuration, its output paths, its inputs and exactly the parameters
it depends on, checked before any job runs (torch-free: the Snakefile imports it).

``paths`` (where files live), ``names`` (protocols, baselines, encoders), ``checks`` (what the schema cannot
say), ``jobs`` (the :class:`Plan`).
"""

from tmf.plan.jobs import Job, Plan, as_json
from tmf.plan.names import (
    BASELINES,
    ENCODER_BASELINES,
    FINETUNE_PROTOCOLS,
    HEAD_PROTOCOLS,
    MODAL_PROTOCOLS,
    PROBE_PROTOCOLS,
    PROTOCOLS,
    SEMISUPERVISED_BASELINES,
    TRAINED_BASELINES,
    fraction_tag,
    head_protocol,
    is_ssl,
    modal_protocol,
    runs_subset,
    split_modal,
    split_protocol,
)

__all__ = ["BASELINES", "ENCODER_BASELINES", "FINETUNE_PROTOCOLS", "HEAD_PROTOCOLS", "MODAL_PROTOCOLS",
           "PROBE_PROTOCOLS", "PROTOCOLS", "SEMISUPERVISED_BASELINES", "TRAINED_BASELINES", "Job", "Plan", "as_json",
           "fraction_tag", "head_protocol", "is_ssl", "modal_protocol", "runs_subset", "split_modal",
           "split_protocol"]
