# The configuration and the plan of jobs (tmf.config, tmf.plan); the rules only look their jobs up here.
import functools
import os
import re
from pathlib import Path

from tmf.config import workflow_config
from tmf.data.minifrance import SPLITS
from tmf.plan import Plan
from tmf.plan.report import REPORT_PAGES
from tmf.plan.paths import NOTEBOOKS
from tmf.report.items import item as report_item
from tmf.workflow import setup_environment


# What --configfile / --config give, over the base their `base` names (the embedded default or the schema's
# defaults), validated with every default filled in: the rest of the workflow reads config[...] without .get().
config.update(workflow_config(config, os.path.join(workflow.basedir, "params/default.yaml")))
setup_environment(config)
# Every job, its files and exactly the parameters it depends on; checked before any job runs.
PLAN = Plan(config)
SOFTWARE = "../envs/tmf.yaml"


wildcard_constraints:
    source="synthetic|minifrance|dfc2022",
    method="[a-z0-9_]+",
    seed=r"\d+",
    encoder="[a-z0-9_-]+",
    protocol="[a-z0-9_]+",
    fraction=r"[0-9.]+",
    split="|".join(SPLITS),


def job_input(rule):
    """Input function of `rule`: the files its job reads."""
    return lambda wildcards: PLAN.job(rule, wildcards).input


def job_params(rule):
    """`params:` of `rule`: exactly what its jobs depend on, one function of the wildcards per name."""
    return {name: functools.partial(_job_param, rule, name) for name in PLAN.param_names(rule)}


def _job_param(rule, name, wildcards):
    return PLAN.job(rule, wildcards).params[name]


def job_output(rule):
    """`output:` of `rule`: its path patterns."""
    return PLAN.outputs(rule)


def report_outputs(rule):
    """The rule's item files (tmf.plan), each wrapped in report() with its caption, category and labels."""
    (job,) = PLAN.jobs(rule)
    shown = {path: (report_item(name), keys) for name, keys, path, _ in job.cfg["items"]}
    return {
        key: report(
            path,
            caption=f"../report/{shown[path][0].part}_{shown[path][0].name}.rst",
            category=shown[path][0].category,
            subcategory=shown[path][0].subcategory,
            labels=shown[path][1] or {"item": shown[path][0].title},
        )
        for key, path in job_output(rule).items()
    }


def only_job(rule):
    """`wildcard_constraints:` that match exactly the one job of `rule`."""
    (job,) = PLAN.jobs(rule)
    return {name: re.escape(value) for name, value in job.wildcards.items()}
