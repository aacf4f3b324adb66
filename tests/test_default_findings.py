"""What the default run finds (issue 14 item 1): the findings of ``tmf.evaluate.summary.study_answers`` on hand-made
tables, and on the tables of a finished default run (``snakemake --cores all`` with params/default.yaml).

The default run takes minutes, so this test does not start it: it reads the outputs of the checkout, or of the
folder named by ``TMF_DEFAULT_RUN``. Without them it skips, saying so, except under ``CI=true`` where ``.ci/run``
runs the default workflow first and a missing output is a failure.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from tmf.evaluate.summary import MIN_SEEDS, beats, coverage_answer, margin, study_answers

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- hand-made tables
def _agg(rows):
    """summary_agg.csv rows from (protocol, method, fraction, n_seeds, miou mean, miou std)."""
    return pd.DataFrame([{"protocol": p, "method": m, "fraction": f, "n_seeds": n, "n_train": 1,
                          "miou_mean": mean, "miou_std": std} for p, m, f, n, mean, std in rows])


GOOD = [
    ("finetune", "random", 0.01, 3, 0.10, 0.01), ("finetune", "random", 1.0, 3, 0.30, 0.02),
    ("finetune", "simclr", 0.01, 3, 0.20, 0.03), ("finetune", "simclr", 1.0, 3, 0.35, 0.01),
    ("finetune", "ssw", 0.01, 3, 0.15, 0.03), ("finetune", "ssw", 1.0, 3, 0.33, 0.01),
    ("finetune", "supervised", 1.0, 3, 0.31, 0.01),
    ("linear", "random", 1.0, 3, 0.12, 0.01), ("linear", "simclr", 1.0, 3, 0.20, 0.01),
    ("linear", "ssw", 1.0, 3, 0.25, 0.01),
]


def _split(lab, unl):
    """split_coverage_summary.csv rows from (iot mean, iot std, n) of labeled–test and unlabeled–test."""
    return pd.DataFrame([{"train_split": s, "test_split": "test", "iou_mean": 0.3, "iou_std": 0.1, "iot_mean": m,
                          "iot_std": sd, "n_seeds": n} for s, (m, sd, n) in (("labeled", lab), ("unlabeled", unl))])


def _by_key(fs):
    return {f.key: f for f in fs}


def test_findings_hold_on_a_table_that_shows_them():
    fs = _by_key(study_answers(_agg(GOOD), _split((0.5, 0.05, 5), (0.8, 0.05, 5))))
    assert {k: f.holds for k, f in fs.items()} == {
        "label_trend": True, "ssl_vs_random_low": True, "ssl_vs_random_linear": True, "supervised": True,
        "coverage_gap": True}
    # the best SSL encoder is the one compared, with its numbers
    assert "simclr 0.200 ± 0.030 (n = 3)" in fs["ssl_vs_random_low"].detail
    assert "ssw 0.250" in fs["ssl_vs_random_linear"].detail
    assert "random: 0.100 at 0.01 → 0.300 at 1" in fs["label_trend"].detail


def _edit(rows, protocol, method, fraction, **values):
    out = []
    for r in rows:
        if r[:3] == (protocol, method, fraction):
            r = (*r[:3], values.get("n", r[3]), values.get("mean", r[4]), values.get("std", r[5]))
        out.append(r)
    return out


def test_each_finding_fails_on_its_own_counterexample():
    # one encoder gets worse with more labels
    fs = _by_key(study_answers(_agg(_edit(GOOD, "finetune", "ssw", 1.0, mean=0.14))))
    assert fs["label_trend"].holds is False and fs["ssl_vs_random_low"].holds is True
    # the best SSL encoder beats random at 1 % but by less than the two stds added (0.2 - 0.1 < 0.06 + 0.05)
    fs = _by_key(study_answers(_agg(_edit(GOOD, "finetune", "random", 0.01, std=0.08))))
    assert fs["ssl_vs_random_low"].holds is False and "-0.010" in fs["ssl_vs_random_low"].detail
    # ... or with too few seeds to say
    fs = _by_key(study_answers(_agg(_edit(GOOD, "finetune", "simclr", 0.01, n=MIN_SEEDS - 1))))
    assert fs["ssl_vs_random_low"].holds is None and "seeds" in fs["ssl_vs_random_low"].detail
    # random's linear probe is the best
    fs = _by_key(study_answers(_agg(_edit(GOOD, "linear", "random", 1.0, mean=0.26))))
    assert fs["ssl_vs_random_linear"].holds is False
    # no supervised baseline
    fs = _by_key(study_answers(_agg([r for r in GOOD if r[1] != "supervised"])))
    assert fs["supervised"].holds is False and "coverage_gap" not in fs
    # no SSL method at all: nothing to say on the comparisons
    fs = _by_key(study_answers(_agg([r for r in GOOD if r[1] in ("random", "supervised")])))
    assert fs["ssl_vs_random_low"].holds is None and fs["ssl_vs_random_linear"].holds is None
    assert fs["label_trend"].holds is True


def test_margin_is_the_difference_beyond_the_two_stds():
    assert margin(0.30, 0.02, 0.20, 0.03) == pytest.approx(0.05)
    assert beats(0.30, 0.02, 0.20, 0.03) is True and beats(0.20, 0.03, 0.30, 0.02) is False
    assert beats(0.30, 0.05, 0.20, 0.05) is False  # 0.1 is not more than 0.1
    assert margin(0.3, None, 0.2, 0.01) is None and beats(0.3, float("nan"), 0.2, 0.01) is None  # one seed


def test_coverage_gap_needs_more_than_the_two_stds():
    assert coverage_answer(_split((0.5, 0.05, 5), (0.8, 0.05, 5))).holds is True
    assert coverage_answer(_split((0.5, 0.15, 5), (0.8, 0.16, 5))).holds is False  # 0.3 < 0.31
    assert coverage_answer(_split((0.8, 0.01, 5), (0.5, 0.01, 5))).holds is False  # the labeled cities cover more
    assert coverage_answer(_split((0.5, 0.01, 2), (0.8, 0.01, 2))).holds is None  # too few t-SNE seeds
    assert coverage_answer(_split((0.5, 0.0, 1), (0.8, 0.0, 1))).holds is None
    assert coverage_answer(_split((float("nan"), 0.0, 5), (0.8, 0.1, 5))).holds is None


# ---------------------------------------------------------------- the default run's own tables
def _default_run() -> Path | None:
    """The folder of a finished default run: $TMF_DEFAULT_RUN, else this checkout."""
    root = Path(os.environ.get("TMF_DEFAULT_RUN") or ROOT)
    return root if (root / "results" / "evaluate" / "summary_agg.csv").is_file() else None


@pytest.fixture(scope="module")
def default_answers() -> dict:
    """The study's answers on the tables of a finished default run (checked to be the default configuration's)."""
    root = _default_run()
    if root is None:
        msg = ("no finished default run: run `snakemake --cores all` in this checkout (README: its run time) "
               "or set TMF_DEFAULT_RUN to the folder of one")
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (.ci/run runs it before the tests)")
        pytest.skip(msg)
    from tmf.config import workflow_config

    cfg = workflow_config({}, ROOT / "params" / "default.yaml")
    agg = pd.read_csv(root / "results" / "evaluate" / "summary_agg.csv")
    # the outputs are the default configuration's: its methods, fractions and seeds
    ev = cfg["evaluate"]
    expected = set(cfg["pretrain"]["methods"]) | set(ev["baselines"])
    assert set(agg["method"]) == expected, f"{root}: summary_agg.csv is not from the default configuration"
    ft = agg[agg["protocol"] == "finetune"]
    assert set(ft["fraction"]) == set(ev["fractions"]) | set(ev["baseline_fractions"])
    assert (agg["n_seeds"] == len(ev["seeds"])).all() and len(ev["seeds"]) >= MIN_SEEDS
    assert all(math.isfinite(v) for v in agg["miou_mean"])
    # the coverage question is asked of the features of the encoder this workflow pretrains (docs/evaluation.md)
    encoder = next(e for e in cfg["appearance"]["encoders"] if e.startswith("ssl-"))
    appearance = root / "results" / "appearance" / encoder
    summary = json.loads((appearance / "summary.json").read_text())
    assert summary["status"] == "ok" and len(summary["seeds"]) >= MIN_SEEDS
    split = pd.read_csv(appearance / "split_coverage_summary.csv")
    fs = study_answers(agg, split)
    assert [f.key for f in fs] == list(QUESTIONS)
    return {"root": root, **_by_key(fs)}


QUESTIONS = ("label_trend", "ssl_vs_random_low", "ssl_vs_random_linear", "supervised", "coverage_gap")
# What the default run does not show yet (issue 14; docs/evaluation.md "What the default run finds" has the
# numbers): strict, so the day it holds this test fails and the mark goes.
NOT_YET = {"ssl_vs_random_low": "on the embedded default the best SSL encoder does not beat random init at 1 % "
                                "fine-tuning by more than the two stds added (docs/evaluation.md)"}


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[k]))
                                 if k in NOT_YET else k for k in QUESTIONS])
def test_the_default_run_answers_the_study_question(default_answers, key):
    f = default_answers[key]
    assert f.holds is True, f"the default run at {default_answers['root']} does not show {key}: {f.detail}"


def test_ci_runs_the_readme_commands_verbatim_the_default_run_first():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.splitlines() if line.strip().startswith("python3.11 -m venv")]
    assert len(commands) == 2 and commands[0].endswith("snakemake --cores all") and commands[1].endswith("pytest")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci and commands[1] in ci, ".ci/run must run the README's two commands verbatim"
    assert ci.index(commands[0]) < ci.index(commands[1]), ".ci/run must run the default run before the tests"
