"""tmf.plan: the jobs, output paths, inputs and parameters of a few configurations, and the checks that stop a
bad configuration before any job (tmf.config's resolution of what a configuration overlays, too)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO

from tmf import config
from tmf.config import ParamsError, workflow_config
from tmf.plan import (
    BASELINES,
    PROTOCOLS,
    SEMISUPERVISED_LOSS,
    TRAINED_BASELINES,
    Plan,
    fraction_tag,
    paths,
    runs,
    split_protocol,
)

EMBEDDED = REPO / "params/default.yaml"


def plan_of(given: dict | None = None) -> Plan:
    """The plan the workflow makes of ``--config`` values ``given`` (over the embedded default)."""
    return Plan(workflow_config(given or {}, EMBEDDED))


def study(**sections) -> Plan:
    """A plan over the schema's defaults (the real study, on real data) with these sections overridden."""
    given = {"base": "study", "data": {"source": "minifrance", "url": "/data/MiniFrance.zip"}, **sections}
    return Plan(workflow_config(given, EMBEDDED))


def counts(plan: Plan) -> dict[str, int]:
    return {rule: len(plan.jobs(rule)) for rule in plan.rules if plan.jobs(rule)}


def test_default_plan():
    plan = plan_of()
    assert counts(plan) == {
        "generate": 1, "index_tiles": 1, "subsample": 1, "pack": 1,
        "appearance_encode": 1, "appearance_embed": 3, "appearance_score": 1, "appearance_figures": 1,
        "class_representativeness": 1, "pretrain": 2,
        # (simclr, ssw, random) x (finetune at 2 fractions + linear at 1) x 3 seeds + supervised at 1.0 x 3 seeds
        "evaluate": 30,
        "evaluate_model": 1,  # one of them (predict.*) also saves its model
        "collect_evaluation": 1, "predict": 1, "map_previews": 1, "report_data": 1, "report_pretraining": 1,
        "report_appearance": 1, "report_evaluation": 1, "report_items_data": 1, "report_items_pretraining": 1,
        "report_items_appearance": 1, "report_items_evaluation": 1, "report_index": 1, "dvc_track": 1}
    assert plan.targets == ["reports/index.html", "data.dvc"]
    job = plan.job("pretrain", {"method": "ssw", "seed": "0"})
    assert job.output == {"encoder": "results/pretrain/ssw/seed0/encoder.pt",
                          "metrics": "results/pretrain/ssw/seed0/metrics.json",
                          "history": "results/pretrain/ssw/seed0/history.csv"}
    assert job.input == {"manifest": "data/tinyminifrance/manifest.csv",
                         "images": "data/tinyminifrance/packed/images.npy"}
    assert job.params["device"] == "auto"
    # exactly what the job depends on: not the job lists, not another method's parameters
    assert "methods" not in job.cfg and "seeds" not in job.cfg and list(job.cfg["method_params"]) == ["ssw"]
    assert job.cfg["crop_size"] == 48  # params/default.yaml
    # every evaluation job scores the test subset params/default.yaml asks for (25 sub-tiles per city)
    assert {j.cfg["max_test_per_city"] for j in plan.jobs("evaluate")} == {25}
    assert plan.outputs("pretrain")["encoder"] == "results/pretrain/{method}/seed{seed}/encoder.pt"


def test_evaluation_jobs_and_encoders():
    plan = plan_of({"pretrain": {"methods": ["simclr"], "seeds": [7]},
                    "evaluate": {"protocols": ["finetune", "linear"], "fractions": [0.01, 1.0], "seeds": [0, 1],
                                 "baselines": ["random", "supervised"]}})
    jobs = plan.jobs("evaluate")
    # finetune: (simclr, random) x 2 fractions x 2 seeds + supervised x 1 x 2; linear: (simclr, random) x 1 x 2
    assert len(jobs) == 8 + 2 + 4
    assert {j.params["encoder"] for j in jobs if j.wildcards["method"] == "simclr"} == {
        "results/pretrain/simclr/seed7/encoder.pt"}
    assert all(j.input["encoder"] == j.params["encoder"] for j in jobs if j.wildcards["method"] == "simclr")
    assert all("encoder" not in j.input and j.params["encoder"] == "none"
               for j in jobs if j.wildcards["method"] in ("random", "supervised"))
    assert not any(j.wildcards["method"] == "supervised" and j.wildcards["protocol"] == "linear" for j in jobs)
    first = jobs[0]
    assert first.output["metrics"] == "results/evaluate/finetune/simclr/frac0.01/seed0/metrics.json"
    assert first.wildcards == {"protocol": "finetune", "method": "simclr", "fraction": "0.01", "seed": "0"}
    assert plan.jobs("collect_evaluation")[0].input["metrics"] == [j.output["metrics"] for j in jobs]
    assert fraction_tag(1.0) == "1" and fraction_tag(0.1) == "0.1"


def test_one_rule_for_the_encoder_a_seed_reads():
    """Evaluation seed i reads pretrain.seeds[i mod n]; the appearance analysis of ssl-<m> reads seed index 0."""
    plan = plan_of({"pretrain": {"methods": ["simclr"], "seeds": [3, 5]},
                    "appearance": {"encoders": ["ssl-simclr"]},
                    "evaluate": {"protocols": ["knn"], "seeds": [0, 1, 2], "baselines": []},
                    "predict": {"enabled": False}})  # knn makes no maps
    read = [plan.job("evaluate", {"protocol": "knn", "method": "simclr", "fraction": "1", "seed": s}).input["encoder"]
            for s in ("0", "1", "2")]
    assert read == [f"results/pretrain/simclr/seed{s}/encoder.pt" for s in (3, 5, 3)]
    assert plan.job("appearance_encode", {"encoder": "ssl-simclr"}).input["weights"] == read[0]


def test_head_protocols_expand_per_dimension():
    plan = plan_of({"pretrain": {"methods": ["simclr"]},
                    "evaluate": {"protocols": ["finetune_horospherical", "finetune_euclidean", "linear"],
                                 "baselines": ["random"], "fractions": [0.01], "seeds": [0]}})
    protocols = {j.wildcards["protocol"] for j in plan.jobs("evaluate")}
    assert protocols == {"linear", *(f"finetune_{h}_d{d}" for h in ("horospherical", "euclidean")
                                      for d in (2, 3, 128))}
    job = plan.job("evaluate", {"protocol": "finetune_euclidean_d3", "method": "random", "fraction": "0.01",
                                "seed": "0"})
    assert set(job.cfg) == {"backbone", "examples", "eval_batch", "max_test_per_city", "test_set", "holdout",
                            "finetune", "hyperbolic"}
    assert "dims" not in job.cfg["hyperbolic"]  # the dimension is in the protocol name
    assert split_protocol("finetune_euclidean_d128") == ("finetune_euclidean", 128)
    assert split_protocol("finetune") == ("finetune", None)


def test_evaluation_params_per_protocol_and_method():
    plan = study(evaluate={"protocols": ["linear", "finetune", "knn"], "imagenet_weights": "w.pth",
                           "baselines": ["random", "imagenet", "berundanet_l1", "oracle"], "seeds": [0]})

    def cfg(protocol, method, fraction="1"):
        return plan.job("evaluate", {"protocol": protocol, "method": method, "fraction": fraction,
                                     "seed": "0"}).cfg

    shared = {"backbone", "examples", "eval_batch", "max_test_per_city", "test_set", "holdout"}  # test_set auto
    assert set(cfg("linear", "simclr")) == shared | {"linear"}
    assert set(cfg("knn", "random")) == shared | {"knn"}
    assert set(cfg("finetune", "simclr")) == shared | {"finetune"}
    assert set(cfg("finetune", "berundanet_l1")) == shared | {"finetune", "semisup"}
    assert set(cfg("finetune", "imagenet")) == shared | {"finetune", "imagenet_weights"}
    assert plan.job("evaluate", {"protocol": "knn", "method": "imagenet", "fraction": "1",
                                 "seed": "0"}).input["encoder"] == "w.pth"
    trained = {j.wildcards["method"] for j in plan.jobs("evaluate") if j.wildcards["protocol"] != "finetune"}
    assert not trained & set(TRAINED_BASELINES)  # from scratch: fine-tuning only


def test_evaluation_jobs_get_the_test_subset_size():
    """evaluate.max_test_per_city reaches every evaluation job (it was dropped, so the embedded default scored
    every test sub-tile instead of the 25 per city params/default.yaml asks for)."""
    plan = plan_of()
    assert {j.cfg["max_test_per_city"] for j in plan.jobs("evaluate")} == {25}
    assert {j.cfg["max_test_per_city"] for j in study().jobs("evaluate")} == {0}


SEMI = {"pretrain": {"methods": ["simclr"]}, "predict": {"protocol": "finetune"},
        "evaluate": {"protocols": ["finetune", "finetune_fixmatch", "segnet"], "fractions": [0.01, 1.0],
                     "baseline_fractions": [0.01, 1.0], "seeds": [0],
                     "baselines": ["random", "supervised", "berundanet_l2", "berundanet_mumford_shah", "fixmatch"]}}


def test_semi_supervised_jobs_and_their_params():
    plan = plan_of(SEMI)
    pairs = {(j.wildcards["protocol"], j.wildcards["method"]) for j in plan.jobs("evaluate")}
    scratch = {"supervised", "berundanet_l2", "berundanet_mumford_shah", "fixmatch"}
    assert pairs == ({("finetune", m) for m in ("simclr", "random", *scratch)}
                     | {("finetune_fixmatch", m) for m in ("simclr", "random")}  # FixMatch from each encoder
                     | {("segnet", m) for m in scratch})  # Table 3.1's SegNet column: from scratch only
    assert len(plan.jobs("evaluate")) == len(pairs) * 2  # same two fractions for every method

    def cfg(protocol, method):
        return plan.job("evaluate", {"protocol": protocol, "method": method, "fraction": "0.01", "seed": "0"}).cfg

    ev = plan.params["evaluate"]
    assert cfg("finetune", "berundanet_l2")["semisup"] == {"l2": ev["semisup"]["l2"]}  # its own term only
    assert cfg("finetune", "fixmatch")["semisup"] == {"fixmatch": ev["semisup"]["fixmatch"]}
    assert cfg("finetune_fixmatch", "simclr")["semisup"] == {"fixmatch": ev["semisup"]["fixmatch"]}
    assert "semisup" not in cfg("finetune", "supervised") and "semisup" not in cfg("finetune", "simclr")
    seg = cfg("segnet", "berundanet_mumford_shah")
    assert seg["segnet"] == ev["segnet"] and "backbone" not in seg and set(seg["semisup"]) == {"mumford_shah"}
    assert "segnet" not in cfg("finetune", "supervised")
    assert set(SEMISUPERVISED_LOSS.values()) == set(config.schema()["properties"]["evaluate"]["properties"]
                                                    ["semisup"]["properties"])
    assert [runs(p, "simclr") for p in ("finetune", "finetune_fixmatch", "segnet", "linear")] == [1, 1, 0, 1]
    assert [runs(p, "fixmatch") for p in ("finetune", "finetune_fixmatch", "segnet", "linear")] == [1, 0, 1, 0]


@pytest.mark.parametrize("change, changed", [
    ({"l2": {"lambda": 2.0}}, {("finetune", "berundanet_l2"), ("segnet", "berundanet_l2")}),
    ({"fixmatch": {"threshold": 0.9}}, {("finetune", "fixmatch"), ("segnet", "fixmatch"),
                                        ("finetune_fixmatch", "simclr"), ("finetune_fixmatch", "random")}),
])
def test_a_semisup_parameter_changes_only_the_jobs_of_its_term(change, changed):
    before = plan_of(SEMI)
    after = plan_of(config.overlay(SEMI, {"evaluate": {"semisup": change}}))
    differ = {(j.wildcards["protocol"], j.wildcards["method"]) for j in after.jobs("evaluate")
              if before.job("evaluate", j.wildcards).params != j.params}
    assert differ == changed
    seg = plan_of(config.overlay(SEMI, {"evaluate": {"segnet": {"channels": [8, 8, 8, 8, 8]}}}))
    assert {j.wildcards["protocol"] for j in seg.jobs("evaluate")
            if before.job("evaluate", j.wildcards).params != j.params} == {"segnet"}


def changed_jobs(before: Plan, after: Plan) -> set[str]:
    """Rules of the jobs whose params differ (what Snakemake re-runs first)."""
    old = {(j.rule, tuple(sorted(j.wildcards.items()))): j.params for r in before.rules for j in before.jobs(r)}
    return {j.rule for r in after.rules for j in after.jobs(r)
            if old.get((j.rule, tuple(sorted(j.wildcards.items())))) != j.params}


@pytest.mark.parametrize("change, rules", [
    ({"report": {"dpi": 72}}, {"appearance_figures", "class_representativeness", "map_previews",
                               "report_items_data", "report_items_appearance", "report_items_pretraining",
                               "report_items_evaluation"}),
    ({"pretrain": {"method_params": {"ssw": {"n_projections": 7}}}}, {"pretrain"}),
    ({"pretrain": {"augment": {"channel_gain": 0.2}}}, {"pretrain"}),
    ({"pretrain": {"augment": {"channel_gain": 0.0}}}, set()),  # off: the params of before the option existed
    ({"evaluate": {"linear": {"steps": 7}}}, {"evaluate", "evaluate_model"}),  # the maps use linear/simclr
    ({"appearance": {"tsne": {"perplexity": 5}}}, {"appearance_embed"}),
    ({"appearance": {"svm": {"nu": 0.2}}}, {"appearance_score"}),
    ({"subsample": {"seed": 3}}, {"subsample"}),
    ({"data": {"synthetic": {"seed": 3}}}, {"generate"}),
    ({"device": "cpu"}, {"appearance_encode", "pretrain", "evaluate", "evaluate_model", "predict"}),
    ({"predict": {"overlap": 32}}, {"predict"}),
    ({"tracking": {"experiment": "other"}}, set()),
    ({"evaluate": {"test_set": "labeled_holdout"}}, {"evaluate", "evaluate_model"}),  # evaluation only
    ({"evaluate": {"holdout": {"seed": 2}}}, {"evaluate", "evaluate_model"}),  # test_set auto may hold out tiles
    ({"evaluate": {"max_test_per_city": 3}}, {"evaluate", "evaluate_model"}),
])
def test_a_change_changes_exactly_the_params_of_what_depends_on_it(change, rules):
    assert changed_jobs(plan_of(), plan_of(change)) == rules


def test_only_the_test_sets_that_hold_out_tiles_read_evaluate_holdout():
    nomaps = {"predict": {"enabled": False}}  # cross_city trains a model per fold: no one model for the maps
    for test_set in ("test_cities", "cross_city"):
        before = plan_of({**nomaps, "evaluate": {"test_set": test_set}})
        assert changed_jobs(before, plan_of({**nomaps, "evaluate": {"test_set": test_set, "holdout": {"seed": 2}}})
                            ) == set()
        assert all("holdout" not in j.cfg for j in before.jobs("evaluate"))
    assert changed_jobs(plan_of(nomaps), plan_of({**nomaps, "evaluate": {"test_set": "cross_city"}})) == {"evaluate"}
    with pytest.raises(config.ParamsError, match="predict.enabled with evaluate.test_set = cross_city"):
        plan_of({"evaluate": {"test_set": "cross_city"}})
    assert all(j.cfg["holdout"] == {"fraction": 0.2, "block_km": 5, "seed": 0}
               for j in plan_of({"evaluate": {"test_set": "labeled_holdout"}}).jobs("evaluate"))


def test_the_channel_gain_is_in_the_pretraining_params_only_when_on():
    def augment(plan):
        return [json.loads(j.params["cfg"])["augment"] for j in plan.jobs("pretrain")]

    assert all("channel_gain" not in a and a["saturation"] == 0.2 for a in augment(plan_of()))
    assert all(a["channel_gain"] == 0.2 for a in augment(plan_of({"pretrain": {"augment": {"channel_gain": 0.2}}})))


def test_a_method_param_changes_only_that_methods_jobs():
    before, after = plan_of(), plan_of({"pretrain": {"method_params": {"ssw": {"n_projections": 7}}}})
    differ = [j.wildcards for j in after.jobs("pretrain")
              if before.job("pretrain", j.wildcards).params != j.params]
    assert differ == [{"method": "ssw", "seed": "0"}]
    evaluations = [j for j in after.jobs("evaluate") if before.job("evaluate", j.wildcards).params != j.params]
    assert evaluations == []  # they re-run because their encoder changes, not their params


def test_report_index_params_are_words_not_shell_text():
    job = plan_of().jobs("report_index")[0]
    pages = job.params["pages"]
    assert pages[:5] == ["--page", "data", "Data and tinyMiniFrance", "reports/notebooks/data.html",
                         "tiles, sub-tiles and class shares vs Tables 2.4–2.6"]
    assert job.params["summaries"] == ["--appearance-summary", "results/appearance/ssl-simclr/summary.json"]
    assert job.params["tables"] == ["--table", "class_shares", "reports/data/class_shares.html",
                                    "--table", "coverage_vs_published", "reports/appearance/coverage_vs_published.html",
                                    "--table", "segmentation_vs_published",
                                    "reports/evaluation/segmentation_vs_published.html"]
    assert job.input["pages"] == [f"reports/notebooks/{n}.html" for n in paths.NOTEBOOKS]
    nb = json.loads(plan_of().jobs("report_pretraining")[0].params["nb"])
    assert nb == {"source": "synthetic", "items": [["loss_curves", {}, "reports/pretraining/loss_curves.png"],
                                                   ["pretraining_runs", {}, "reports/pretraining/pretraining_runs.html"]]}


def test_every_report_item_is_a_file_of_its_notebook_and_its_items_job():
    """The figures and tables a notebook shows are the outputs of its report_items job (drawn) or of the stage
    that writes them; the notebook reads every one of them; the dpi is a parameter of the drawing job only."""
    from tmf.report import items

    plan = plan_of()
    for part in paths.NOTEBOOKS:
        drawn = plan.jobs(f"report_items_{part}")[0]
        notebook = plan.jobs(f"report_{part}")[0]
        shown = json.loads(notebook.params["nb"])["items"]
        assert {items.item(name).part for name, _, _ in shown} == {part}
        assert set(notebook.input["shown"]) == {path for _, _, path in shown}
        mine = {path for name, _, path in shown if items.item(name).kind != "output"}
        assert set(drawn.output.values()) == mine and mine, part
        assert all(p.startswith(f"reports/{part}/") for p in mine)
        assert drawn.cfg["dpi"] == 110 and "dpi" not in json.loads(notebook.params["nb"])
        produced = {p for rule in plan.rules if not rule.startswith("report_") for j in plan.jobs(rule)
                    for p in plan_files(j.output)}
        assert {path for name, _, path in shown if items.item(name).kind == "output"} <= produced


def plan_files(value):
    if isinstance(value, dict):
        return [p for v in value.values() for p in plan_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in plan_files(v)]
    return [value]


def test_one_confusion_matrix_per_protocol_and_method_at_its_largest_fraction_and_first_seed():
    plan = plan_of({"evaluate": {"protocols": ["linear", "finetune", "knn"], "seeds": [3, 1]}})
    job = plan.jobs("report_items_evaluation")[0]
    shown = [(keys, path, own) for name, keys, path, own in job.cfg["items"] if name == "confusion"]
    runs = {(k["protocol"], k["method"]): (k["fraction"], k["seed"]) for k, _, _ in shown}
    assert runs == {**{(p, m): ("1", "1") for p in ("linear", "finetune") for m in ("simclr", "ssw", "random")},
                    ("finetune", "supervised"): ("1", "1")}  # supervised: fine-tuning only
    keys, path, own = shown[0]
    assert path == f"reports/evaluation/confusion-{keys['protocol']}-{keys['method']}-1-1.png"
    assert own == {"metrics": f"results/evaluate/{keys['protocol']}/{keys['method']}/frac1/seed1/metrics.json"}
    assert own["metrics"] in job.input["files"]
    nb = json.loads(plan.jobs("report_evaluation")[0].params["nb"])["items"]
    predictions = {tuple(sorted(k.items())): p for n, k, p in nb if n == "predictions"}
    assert predictions[tuple(sorted(keys.items()))] == own["metrics"].replace("metrics.json", "predictions.png")


def test_real_source_fetches_and_dvc_can_be_off():
    plan = study(data={"source": "dfc2022", "url": "/data/dfc"}, tracking={"dvc": False})
    assert counts(plan)["fetch"] == 1 and "generate" not in counts(plan)
    fetch = plan.jobs("fetch")[0]
    assert fetch.wildcards == {"source": "dfc2022"} and fetch.output == {"raw": "data/raw/dfc2022"}
    assert fetch.cfg == {"source": "dfc2022", "url": "/data/dfc",
                         "extract": {"max_gb": 2000, "max_members": 1_000_000}}
    assert plan.job("index_tiles").input == {"raw": "data/raw/dfc2022"}
    assert plan.targets == ["reports/index.html"] and not plan.jobs("dvc_track")


def test_overlay_adds_jobs_and_a_figure(tmp_path):
    (tmp_path / "vaihingen.tif").write_bytes(b"")
    plan = plan_of({"appearance": {"overlay_dir": str(tmp_path)}})
    assert counts(plan)["appearance_overlay"] == 1  # one per encoder of params/default.yaml
    figures = plan.job("appearance_figures", {"encoder": "ssl-simclr"})
    assert figures.input["overlay"] == "results/appearance/ssl-simclr/overlay.npz"
    assert "overlay" in figures.output


def test_a_job_outside_the_plan_is_named():
    with pytest.raises(ValueError, match=r"rule pretrain with \{'method': 'byol', 'seed': '0'\}: not a job"):
        plan_of().job("pretrain", {"method": "byol", "seed": "0"})


def test_names_agree_with_the_schema_and_the_commands():
    from tmf.appearance.figures import APPEARANCE_FIGURES

    ev = config.schema()["properties"]["evaluate"]["properties"]
    assert tuple(ev["protocols"]["items"]["enum"]) == PROTOCOLS
    assert tuple(ev["baselines"]["items"]["enum"]) == BASELINES
    assert paths.APPEARANCE_FIGURES == APPEARANCE_FIGURES


def test_plan_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, tmf.plan, tmf.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- what a configuration overlays
def test_the_embedded_default_is_the_base_unless_base_is_study():
    embedded = yaml.safe_load(EMBEDDED.read_text())
    assert workflow_config({}, EMBEDDED)["pretrain"]["steps"] == embedded["pretrain"]["steps"] == 200
    over = workflow_config({"pretrain": {"steps": 7}}, EMBEDDED)
    assert over["pretrain"]["steps"] == 7 and over["pretrain"]["crop_size"] == embedded["pretrain"]["crop_size"]
    real = workflow_config({"base": "study"}, EMBEDDED)
    assert real == {**config.validate({"base": "study"}), "pretrain": real["pretrain"]}
    assert real["pretrain"]["methods"] == ["simclr"] and real["pretrain"]["crop_size"] == 224
    assert config.schema()["properties"]["base"]["default"] == "embedded"
    with pytest.raises(ParamsError, match="base"):
        workflow_config({"base": "laptop"}, EMBEDDED)


def test_all_methods_are_expanded_and_unknown_ones_named():
    everything = workflow_config({"pretrain": {"methods": ["all"]}}, EMBEDDED)["pretrain"]["methods"]
    assert everything == [m for m in config.method_names() if not m.startswith("mm_ssl")]  # they need elevation
    assert len(everything) == 18
    with pytest.raises(ParamsError, match=r"pretrain\.methods: unknown method 'simclrr' \(did you mean 'simclr'\?\)"):
        workflow_config({"pretrain": {"methods": ["simclrr"]}}, EMBEDDED)


def test_misspelt_choices_and_keys_get_a_suggestion():
    with pytest.raises(ParamsError, match=r"evaluate\.protocols\.0: 'lineer' is not one of .*did you mean 'linear'"):
        config.validate({"evaluate": {"protocols": ["lineer"]}})
    with pytest.raises(ParamsError, match=r"'subsampel' \(did you mean 'subsample'\?\)"):
        config.validate({"subsampel": {}})
    assert config.did_you_mean("zzzz", ["simclr"]) == ""


# ---- checks before any job (tests/test_workflow_params.py runs each through `snakemake -n`)
BAD = [
    ({"appearance": {"encoders": ["ssl-bogus"]}}, r"appearance\.encoders: unknown encoder 'ssl-bogus'"),
    ({"appearance": {"encoders": ["ssl-simclrr"]}}, r"did you mean 'ssl-simclr'"),
    ({"appearance": {"encoders": ["ssl-byol"]}}, r"pretrained by 'byol', but pretrain\.methods"),
    ({"appearance": {"encoders": ["random-resnet99"]}}, r"appearance\.encoders: unknown encoder 'random-resnet99'"),
    ({"appearance": {"feature_layer": "stage5"}}, r"appearance\.feature_layer = stage5"),
    ({"appearance": {"overlay_dir": "no/such/folder"}}, r"appearance\.overlay_dir"),
    ({"pretrain": {"methods": ["simclrr"]}}, r"pretrain\.methods: unknown method 'simclrr'"),
    ({"pretrain": {"crop_size": 80}}, r"pretrain\.crop_size = 80 px exceeds .* subsample\.size = 64"),
    ({"pretrain": {"ddp": True, "nproc": 3}}, r"pretrain\.batch_size = 32 is not divisible by pretrain\.nproc"),
    ({"pretrain": {"methods": ["hydes"], "method_params": {"hydes": {"n_global": 1, "n_local": 0}}}},
     r"pretrain\.method_params\.hydes"),
    ({"evaluate": {"protocols": ["lineer"]}}, r"evaluate\.protocols\.0: .*did you mean 'linear'"),
    ({"evaluate": {"baselines": ["randon"]}}, r"evaluate\.baselines\.0: .*did you mean 'random'"),
    ({"evaluate": {"baselines": ["imagenet"]}}, r"evaluate\.imagenet_weights is empty"),
    ({"evaluate": {"backbone": "resnet34"}}, r"evaluate\.backbone = resnet34 differs from pretrain\.backbone"),
    ({"evaluate": {"protocols": ["segnet"], "baselines": ["random"]}},
     r"evaluate\.protocols lists 'segnet', but no method runs under it"),
    ({"subsample": {"size": 600}}, r"subsample\.size = 600 px exceeds .*data\.synthetic\.tile_size = 512"),
    ({"subsample": {"n_subtiles": 20}}, r"subsample\.n_subtiles = 20 is less than the 107 tiles"),
    ({"subsample": {"n_subtiles": 100000}}, r"subsample\.n_subtiles = 100000 asks"),
    ({"data": {"source": "minifrance"}}, r"data\.url is empty"),
    ({"pretrain": {"methods": ["mm_ssl"]}, "data": {"dem": "none"}},
     r"pretrain\.methods: mm_ssl pretrains on elevation, but data\.dem is none"),
    ({"evaluate": {"protocols": ["finetune_mm"]}, "data": {"dem": "none"}},
     r"evaluate\.multimodal\.subsets: \['dem', 'rgb_dem'\] of evaluate\.protocols \['finetune_mm'\] need elevation"),
    ({"pretrain": {"methods": ["mm_ssl_dem"]}, "appearance": {"encoders": ["ssl-mm_ssl_dem"]}},
     r"appearance\.encoders: 'ssl-mm_ssl_dem': 'mm_ssl_dem' pretrains no RGB encoder"),
]


@pytest.mark.parametrize("given, message", BAD, ids=[m.split(r"\.")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_configuration_is_refused_naming_the_parameter(given, message):
    with pytest.raises(ParamsError, match=message):
        plan_of(given)


def test_good_neighbours_of_the_bad_configurations_pass(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"")
    plan_of({"appearance": {"encoders": ["ssl-ssw", "imagenet-vgg16"], "feature_layer": "stage4",
                            "overlay_dir": str(tmp_path)}})
    plan_of({"appearance": {"encoders": ["imagenet-vgg16"], "feature_layer": "stage5"}})
    plan_of({"pretrain": {"crop_size": 64, "ddp": True, "nproc": 4}})
    plan_of({"pretrain": {"methods": ["hydes"], "method_params": {"hydes": {"n_global": 1, "n_local": 1}}},
             "appearance": {"encoders": ["ssl-hydes"]}})
    plan_of({"subsample": {"size": 512, "n_subtiles": 107}, "pretrain": {"crop_size": 48}})
    plan_of({"evaluate": {"baselines": ["imagenet"], "imagenet_weights": "w.pth"}})


@pytest.mark.parametrize("argv, hint", [
    (["pretrain", "--method", "simclrr", "--seed", "0", "--manifest", "m", "--packed", "p", "--out", "o"],
     "--method: unknown method 'simclrr' (did you mean 'simclr'?)"),
    (["evaluate", "--protocol", "lineer", "--method", "random", "--fraction", "1", "--seed", "0", "--out", "o"],
     "--protocol: unknown protocol 'lineer' (did you mean 'linear'?)"),
    (["evaluate", "--protocol", "finetune_euclidean_d3", "--method", "superviced", "--fraction", "1", "--seed", "0",
      "--out", "o"], "--method: unknown method 'superviced' (did you mean 'supervised'?)"),
])
def test_cli_names_the_closest_method_or_protocol(argv, hint, capsys):
    from tmf.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1, err


# ---- the multi-modal study (params/multimodal.yaml) and elevation in the data stage
MULTIMODAL = yaml.safe_load((REPO / "params/multimodal.yaml").read_text())


def test_multimodal_plan_is_table_4_3_shaped():
    plan = plan_of(MULTIMODAL)
    cells = {(j.wildcards["protocol"], j.wildcards["method"]) for j in plan.jobs("evaluate")}
    both = ("random", "mm_ssl", "mm_ssl_star")
    assert cells == ({("finetune_mm_rgb", m) for m in (*both, "mm_ssl_rgb")}
                     | {("finetune_mm_dem", m) for m in (*both, "mm_ssl_dem")}
                     | {("finetune_mm_rgb_dem", m) for m in both})  # no cell below Table 4.3's diagonal
    assert counts(plan)["evaluate"] == 11 * len(MULTIMODAL["evaluate"]["seeds"])

    def job(protocol, method, seed="1"):
        return plan.job("evaluate", {"protocol": protocol, "method": method, "fraction": "0.01", "seed": seed})

    fused = job("finetune_mm_rgb_dem", "mm_ssl")
    assert fused.input["dem"] == paths.PACKED_DEM["dem"] and fused.input["dem_valid"] == paths.PACKED_DEM["dem_valid"]
    assert fused.input["encoder"] == "results/pretrain/mm_ssl/seed0/encoder.pt"
    shared = {"backbone", "examples", "eval_batch", "finetune", "max_test_per_city", "test_set", "holdout"}
    assert set(fused.cfg) == shared | {"elevation"} and fused.cfg["elevation"] == plan.params["elevation"]
    rgb = job("finetune_mm_rgb", "mm_ssl_rgb")
    assert "dem" not in rgb.input and set(rgb.cfg) == shared
    supcon = plan_of({**MULTIMODAL, "evaluate": {**MULTIMODAL["evaluate"], "protocols": ["supcon_mm"]}})
    assert set(supcon.job("evaluate", {"protocol": "supcon_mm_dem", "method": "random", "fraction": "0.01",
                                       "seed": "0"}).cfg) == shared | {"elevation", "multimodal"}
    pre = {j.wildcards["method"]: j for j in plan.jobs("pretrain")}
    assert "dem" in pre["mm_ssl"].input and "dem" not in pre["mm_ssl_rgb"].input
    assert "elevation" in pre["mm_ssl_dem"].cfg and "elevation" not in pre["mm_ssl_rgb"].cfg
    collect = plan.jobs("collect_evaluation")[0]
    assert collect.output["grid"] == paths.MODALITY_GRID and collect.params["grid"] == ["--grid", paths.MODALITY_GRID]
    # the elevation settings re-run exactly the jobs that read elevation
    after = plan_of({**MULTIMODAL, "elevation": {"scale_m": 5.0}})
    changed = {(j.rule, j.wildcards.get("protocol", ""), j.wildcards["method"]) for r in ("pretrain", "evaluate")
               for j in after.jobs(r) if plan.job(r, j.wildcards).params != j.params}
    assert {(r, m) for r, _, m in changed if r == "pretrain"} == {("pretrain", m) for m in
                                                                  ("mm_ssl", "mm_ssl_dem", "mm_ssl_star")}
    assert {p for r, p, _ in changed if r == "evaluate"} == {"finetune_mm_dem", "finetune_mm_rgb_dem"}


def test_elevation_in_the_data_stage_and_the_default_run():
    plan = plan_of()
    assert plan.outputs("pack") == {"images": paths.PACKED_IMAGES, "labels": paths.PACKED_LABELS, **paths.PACKED_DEM}
    assert plan.job("subsample").params["dem"] == "yes" and plan.job("generate").cfg["dem"] == "auto"
    assert not any("dem" in j.input for r in ("pretrain", "evaluate") for j in plan.jobs(r))  # nothing reads it
    assert "grid" not in plan.outputs("collect_evaluation") and plan.jobs("collect_evaluation")[0].params["grid"] == []
    mf = study()  # MiniFrance ships no DEM: the RGB-only data product
    assert mf.outputs("pack") == {"images": paths.PACKED_IMAGES, "labels": paths.PACKED_LABELS}
    assert mf.job("subsample").params["dem"] == "no"
    assert study(data={"source": "dfc2022", "url": "/d"}).job("subsample").params["dem"] == "yes"
    assert plan_of({"data": {"dem": "none"}}).job("subsample").params["dem"] == "no"
    with pytest.raises(ParamsError, match=r"mm_ssl pretrains on elevation, but data\.source 'minifrance' has no"):
        study(pretrain={"methods": ["mm_ssl"]})
    study(pretrain={"methods": ["mm_ssl_rgb"]}, evaluate={"protocols": ["finetune_mm"],
                                                          "multimodal": {"subsets": ["rgb"]}},
          predict={"enabled": False})  # the maps read RGB tiles: no model of a multi-modal protocol maps them
