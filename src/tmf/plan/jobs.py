"""Every job of a configuration: its rule, wildcards, output and input paths, and exactly the parameters it
depends on, for every stage (data, appearance, pretrain, evaluate, predict, dvc; the report's jobs:
:mod:`tmf.plan.report`).

A rule's ``params:`` are its jobs' :attr:`Job.params` (Snakemake compares them with the last run's to decide
what to re-run, tests/test_workflow_e2e.py), its inputs :attr:`Job.input`; workflow/rules/common.smk only looks
them up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tmf.modalities import DEM, SUBSETS, needs_dem
from tmf.plan import paths
from tmf.plan.checks import check, check_map_source, mappable
from tmf.plan.job import Job, as_json, key
from tmf.plan.names import (
    FINETUNE_PROTOCOLS,
    HEAD_PROTOCOLS,
    HOLDOUT_TEST_SETS,
    MODAL_PROTOCOLS,
    SEGNET_PROTOCOL,
    TRAINED_BASELINES,
    fraction_tag,
    has_elevation,
    head_protocol,
    is_ssl,
    modal_protocol,
    runs,
    runs_subset,
    semisup_term,
    split_modal,
    split_protocol,
    ssl_encoder_method,
)
from tmf.plan.report import REPORT_PAGES, ReportJobs

__all__ = ["REPORT_PAGES", "Job", "Plan", "as_json"]

# What each step of the appearance analysis reads of the `appearance` section.
APPEARANCE_KEYS = {
    "appearance_encode": ("weights", "random_init_seed", "feature_layer", "input_size", "batch_size"),
    "appearance_embed": ("tsne",),
    "appearance_score": ("svm", "grid_resolution", "grid_margin", "split_surface", "min_points"),
    "appearance_overlay": ("weights", "random_init_seed", "feature_layer", "input_size", "batch_size", "tsne",
                           "seeds", "overlay_dir"),
}
PRETRAIN_JOB_KEYS = ("methods", "seeds", "method_params")  # enumerate jobs: adding a method re-runs no other
FETCH_KEYS = ("source", "url", "extract")
INDEX_KEYS = ("missing_label",)
EVALUATION_KEYS = ("backbone", "examples", "eval_batch", "max_test_per_city", "test_set")  # every protocol
PREDICT_KEYS = ("window", "overlap", "batch")  # what a map job reads of `predict` (the rest chooses the model)


class Plan(ReportJobs):
    """The jobs of one validated configuration (:func:`tmf.config.workflow_config`), checked first
    (:func:`tmf.plan.checks.check`): ``jobs(rule)``, ``job(rule, wildcards)``, ``outputs(rule)``."""

    def __init__(self, params: dict[str, Any]):
        check(params)
        self.params = params
        self._outputs = paths.outputs(params)
        self._jobs: dict[str, dict[tuple, Job]] = {rule: {} for rule in self._outputs}
        for stage in (self._data, self._appearance, self._pretrain, self._evaluate, self._predict, self._report,
                      self._dvc):
            for job in stage():
                self._jobs[job.rule][key(job.wildcards)] = job

    # ---- lookups
    def outputs(self, rule: str) -> dict[str, Any]:
        """The rule's output patterns (what its ``output:`` declares)."""
        return self._outputs[rule]

    def output(self, rule: str, **wildcards: Any) -> dict[str, Any]:
        """The output paths of the rule's job with these wildcards."""
        return paths.fill(self._outputs[rule], wildcards)

    @property
    def rules(self) -> list[str]:
        """Every rule of the workflow (some may have no job in this configuration)."""
        return list(self._jobs)

    def jobs(self, rule: str) -> list[Job]:
        return list(self._jobs[rule].values())

    def job(self, rule: str, wildcards: Mapping[str, Any] | None = None) -> Job:
        """The job a rule runs for these wildcards (Snakemake's, or a dict); a job outside the plan is an error."""
        wildcards = dict(wildcards.items()) if wildcards is not None else {}
        try:
            return self._jobs[rule][key(wildcards)]
        except KeyError:
            known = [j.wildcards for j in self.jobs(rule)][:4]
            raise ValueError(f"rule {rule} with {wildcards}: not a job of this configuration "
                             f"(its jobs: {known}{', ...' if len(self._jobs[rule]) > 4 else ''})") from None

    def param_names(self, rule: str) -> list[str]:
        """The names of the rule's ``params:`` (the same for all its jobs)."""
        jobs = self.jobs(rule)
        return list(jobs[0].params) if jobs else []

    @property
    def targets(self) -> list[str]:
        """What the workflow's default target asks for: the report (and the DVC pointer when versioning)."""
        return [paths.REPORT_INDEX, *([paths.DVC_POINTER] if self.params["tracking"]["dvc"] else [])]

    # ---- which encoder a job reads
    def pretrained_encoder(self, method: str, index: int = 0) -> str:
        """The encoder file of SSL method ``method`` read by evaluation seed ``evaluate.seeds[index]``, and by the
        appearance analysis (index 0): the one pretrained with ``pretrain.seeds[index mod len(pretrain.seeds)]``."""
        seeds = self.params["pretrain"]["seeds"]
        return self.output("pretrain", method=method, seed=seeds[index % len(seeds)])["encoder"]

    def evaluation_encoder(self, method: str, index: int) -> str:
        """What an evaluation job starts from: an SSL method's encoder file, the ImageNet weights, or "none"."""
        if is_ssl(method):
            return self.pretrained_encoder(method, index)
        if method == "imagenet":
            return self.params["evaluate"]["imagenet_weights"]
        return "none"

    # ---- stages
    def _data(self) -> Iterator[Job]:
        d = self.params["data"]
        source = d["source"]
        if source == "synthetic":
            cfg = {"source": "synthetic", "synthetic": d["synthetic"], "dem": d["dem"]}
            yield Job("generate", {}, self.output("generate"), {}, {"cfg": as_json(cfg)})
        else:
            cfg = {k: d[k] for k in FETCH_KEYS}
            yield Job("fetch", {"source": source}, self.output("fetch", source=source), {},
                      {"cfg": as_json(cfg), "cache": paths.DOWNLOAD_CACHE})
        raw = paths.fill(paths.RAW, {"source": source})
        yield Job("index_tiles", {}, self.output("index_tiles"), {"raw": raw},
                  {"cfg": as_json({k: d[k] for k in INDEX_KEYS})})
        sub = self.output("subsample")
        yield Job("subsample", {}, sub, {"tiles": self.output("index_tiles")["tiles"], "raw": raw},
                  {"cfg": as_json(self.params["subsample"]), "dem": "yes" if has_elevation(self.params) else "no"})
        yield Job("pack", {}, self.output("pack"), {"manifest": sub["manifest"], "crops": sub["crops"]})

    def _appearance(self) -> Iterator[Job]:
        a = self.params["appearance"]
        device = self.params["device"]
        packed = {"manifest": paths.MANIFEST, "images": paths.PACKED_IMAGES}
        dpi = self.params["report"]["dpi"]

        def cfg(rule: str) -> str:
            return as_json({k: a[k] for k in APPEARANCE_KEYS[rule]})

        for encoder in a["encoders"]:
            w = {"encoder": encoder}
            reads = dict(packed)
            method = ssl_encoder_method(encoder)
            if method is not None:
                reads["weights"] = self.pretrained_encoder(method)
            encoded = self.output("appearance_encode", **w)
            yield Job("appearance_encode", w, encoded, reads, {"cfg": cfg("appearance_encode"), "device": device})
            embedded = []
            for seed in a["seeds"]:
                ws = {**w, "seed": str(seed)}
                embedded.append(self.output("appearance_embed", **ws)["embedding"])
                yield Job("appearance_embed", ws, self.output("appearance_embed", **ws),
                          {"features": encoded["features"]}, {"cfg": cfg("appearance_embed")})
            scored = self.output("appearance_score", **w)
            yield Job("appearance_score", w, scored,
                      {"manifest": paths.MANIFEST, "info": encoded["info"], "embeddings": embedded},
                      {"cfg": cfg("appearance_score")})
            figures = {"manifest": paths.MANIFEST, **{k: scored[k] for k in ("summary", "coverage", "splits")},
                       "embedding": embedded[0], "surfaces": scored["surfaces"][0]}
            if a["overlay_dir"]:
                overlay = self.output("appearance_overlay", **w)
                yield Job("appearance_overlay", w, overlay, {**reads, "features": encoded["features"]},
                          {"cfg": cfg("appearance_overlay"), "device": device})
                figures["overlay"] = overlay["overlay"]
            yield Job("appearance_figures", w, self.output("appearance_figures", **w), figures, {"dpi": dpi})
        yield Job("class_representativeness", {}, self.output("class_representativeness"), packed, {"dpi": dpi})

    def pretrain_cfg(self, method: str) -> dict[str, Any]:
        """Exactly what one method's pretraining depends on: the shared settings and its own method params (and
        the ``elevation`` section for a method that reads elevation, which ``tmf pretrain`` takes apart)."""
        pre = self.params["pretrain"]
        cfg = {k: v for k, v in pre.items() if k not in PRETRAIN_JOB_KEYS}
        if not pre["augment"]["channel_gain"]:
            # off, the gain draws nothing and the job does not depend on it: runs finished before it existed stay done
            cfg["augment"] = {k: v for k, v in pre["augment"].items() if k != "channel_gain"}
        cfg["method_params"] = {method: pre["method_params"][method]}
        if needs_dem(method):
            cfg["elevation"] = self.params["elevation"]
        return cfg

    def _pretrain(self) -> Iterator[Job]:
        pre = self.params["pretrain"]
        for method in pre["methods"]:
            reads = {"manifest": paths.MANIFEST, "images": paths.PACKED_IMAGES,
                     **(paths.PACKED_DEM if needs_dem(method) else {})}
            for seed in pre["seeds"]:
                w = {"method": method, "seed": str(seed)}
                yield Job("pretrain", w, self.output("pretrain", **w), reads,
                          {"cfg": as_json(self.pretrain_cfg(method)), "device": self.params["device"]})

    def evaluation_cfg(self, protocol: str, method: str) -> dict[str, Any]:
        """Exactly what one evaluation job depends on: the shared settings and its own protocol's section (the
        multi-modal protocols: ``finetune``, ``multimodal`` for supcon_mm, and the ``elevation`` section, which
        ``tmf evaluate`` takes apart, for the dem subsets)."""
        protocol, _ = split_protocol(protocol)  # the head dimension is in the protocol name, not in the params
        protocol, subset = split_modal(protocol)  # so is the subset of modalities
        ev = self.params["evaluate"]
        cfg = {k: ev[k] for k in EVALUATION_KEYS}
        if ev["test_set"] in HOLDOUT_TEST_SETS:
            cfg["holdout"] = ev["holdout"]
        if method == "imagenet":
            cfg["imagenet_weights"] = ev["imagenet_weights"]
        if subset is not None:
            cfg["finetune"] = ev["finetune"]
            if protocol == "supcon_mm":
                cfg["multimodal"] = {k: v for k, v in ev["multimodal"].items() if k != "subsets"}
            if DEM in SUBSETS[subset]:
                cfg["elevation"] = self.params["elevation"]
        elif protocol in FINETUNE_PROTOCOLS:
            cfg["finetune"] = ev["finetune"]
            term = semisup_term(protocol, method)
            if term is not None:  # only the job's own unlabeled term
                cfg["semisup"] = {term: ev["semisup"][term]}
            if protocol == SEGNET_PROTOCOL:  # no ResNet: the SegNet's widths instead of the backbone
                del cfg["backbone"]
                cfg["segnet"] = ev["segnet"]
            if protocol in HEAD_PROTOCOLS:
                cfg["hyperbolic"] = {k: v for k, v in ev["hyperbolic"].items() if k != "dims"}
        else:
            cfg[protocol] = ev[protocol]
        return cfg

    def _evaluate(self) -> Iterator[Job]:
        ev = self.params["evaluate"]
        methods = list(dict.fromkeys([*self.params["pretrain"]["methods"], *ev["baselines"]]))
        protocols = []
        for p in ev["protocols"]:
            if p in HEAD_PROTOCOLS:
                protocols += [head_protocol(p, d) for d in ev["hyperbolic"]["dims"]]
            elif p in MODAL_PROTOCOLS:
                protocols += [modal_protocol(p, s) for s in ev["multimodal"]["subsets"]]
            else:
                protocols.append(p)
        metrics = []
        for protocol in protocols:
            base, _ = split_protocol(protocol)
            base, subset = split_modal(base)
            reads = {"manifest": paths.MANIFEST, "images": paths.PACKED_IMAGES, "labels": paths.PACKED_LABELS,
                     **(paths.PACKED_DEM if subset is not None and DEM in SUBSETS[subset] else {})}
            for method in methods:
                if subset is not None:
                    if not runs_subset(method, subset):
                        continue
                    fractions = ev["fractions"]
                elif not runs(base, method):
                    continue
                elif method in TRAINED_BASELINES:
                    fractions = ev["baseline_fractions"]
                else:
                    fractions = ev["fractions"] if base in FINETUNE_PROTOCOLS else ev["probe_fractions"]
                cfg = as_json(self.evaluation_cfg(protocol, method))
                for fraction in fractions:
                    for i, seed in enumerate(ev["seeds"]):
                        w = {"protocol": protocol, "method": method, "fraction": fraction_tag(fraction),
                             "seed": str(seed)}
                        encoder = self.evaluation_encoder(method, i)
                        out = self.output("evaluate", **w)
                        metrics.append(out["metrics"])
                        yield Job("evaluate", w, out, {**reads, **({"encoder": encoder} if encoder != "none" else {})},
                                  {"cfg": cfg, "encoder": encoder, "device": self.params["device"]})
        grid = self.output("collect_evaluation").get("grid")  # with the multi-modal protocols only
        yield Job("collect_evaluation", {}, self.output("collect_evaluation"), {"metrics": metrics},
                  {"grid": ["--grid", grid] if grid else []})
        if self.params["predict"]["enabled"]:  # the job predict.* names also saves its model (rule evaluate_model)
            planned = [j.wildcards for j in self.jobs("evaluate")]
            w = self.map_source(planned)
            check_map_source(w, planned)
            job = self.job("evaluate", w)
            yield Job("evaluate_model", w, self.output("evaluate_model", **w), job.input, job.params)

    def map_source(self, planned: list[dict[str, str]]) -> dict[str, str]:
        """The wildcards of the evaluation job whose model predicts the maps: ``predict.*``, each ``auto`` resolved
        among the ``planned`` evaluation jobs' wildcards (finetune, else the first protocol that maps; the first
        of pretrain.methods; the largest fraction that protocol and method run; the first evaluation seed)."""
        pr = self.params["predict"]
        protocol, method = pr["protocol"], pr["method"]
        if protocol == "auto":
            pixel = [p for p in dict.fromkeys(w["protocol"] for w in planned) if mappable(p)]
            protocol = "finetune" if "finetune" in pixel else next(iter(pixel), "")
        if method == "auto":
            method = self.params["pretrain"]["methods"][0]
        fraction = pr["fraction"]
        if fraction == "auto":
            ran = [float(w["fraction"]) for w in planned if (w["protocol"], w["method"]) == (protocol, method)]
            fraction = max(ran, default=1.0)
        seed = self.params["evaluate"]["seeds"][0] if pr["seed"] == "auto" else pr["seed"]
        return {"protocol": protocol, "method": method, "fraction": fraction_tag(fraction), "seed": str(seed)}

    def _predict(self) -> Iterator[Job]:
        pr = self.params["predict"]
        if not pr["enabled"]:
            return
        model = self.jobs("evaluate_model")[0].output["model"]
        raw = paths.fill(paths.RAW, {"source": self.params["data"]["source"]})
        cfg = as_json({k: pr[k] for k in PREDICT_KEYS})
        for split in pr["splits"]:
            w = {"split": split}
            out = self.output("predict", **w)
            yield Job("predict", w, out, {"tiles": paths.TILES, "raw": raw, "model": model},
                      {"cfg": cfg, "device": self.params["device"]})
            yield Job("map_previews", w, self.output("map_previews", **w), {**out, "raw": raw},
                      {"dpi": self.params["report"]["dpi"], "tiles": pr["preview_tiles"]})

    def _dvc(self) -> Iterator[Job]:
        if self.params["tracking"]["dvc"]:
            reads = [f for f in self.targets if f != paths.DVC_POINTER]
            yield Job("dvc_track", {}, self.output("dvc_track"), {"targets": reads})

