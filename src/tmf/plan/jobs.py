"""Every job of a configuration: its rule, wildcards, output and input paths, and exactly the parameters it
depends on, for every stage (data, appearance, pretrain, evaluate, report, dvc).

A rule's ``params:`` are its jobs' :attr:`Job.params` (Snakemake compares them with the last run's to decide
what to re-run, tests/test_workflow_e2e.py), its inputs :attr:`Job.input`; workflow/rules/common.smk only looks
them up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmf.plan import items as report_items
from tmf.plan import paths
from tmf.plan.checks import check
from tmf.plan.names import (
    FINETUNE_PROTOCOLS,
    HEAD_PROTOCOLS,
    HOLDOUT_TEST_SETS,
    SCENE_PROTOCOLS,
    SEGNET_PROTOCOL,
    TRAINED_BASELINES,
    fraction_tag,
    head_protocol,
    is_ssl,
    runs,
    semisup_term,
    split_protocol,
    ssl_encoder_method,
)

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
REPORT_PAGES = {  # notebook: (title on reports/index.html, what it shows)
    "data": ("Data and tinyMiniFrance", "tiles, sub-tiles and class shares vs Tables 2.4–2.6"),
    "appearance": ("Appearance analysis",
                   "t-SNE + one-class SVM coverage of the test cities by the training cities, vs Table 2.7"),
    "pretraining": ("Pretraining", "loss curves and embedding diagnostics of every (method, seed)"),
    "evaluation": ("Evaluation",
                   "segmentation scores of every protocol × method × label fraction on the test set "
                   "(evaluate.test_set), vs Table 3.1 where it is the test cities"),
}


def as_json(obj: Any) -> str:
    """Parameters as one canonical JSON string, as ``tmf ... --cfg`` reads them (and Snakemake compares them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Job:
    """One job of the workflow. ``params`` hold the values its rule passes on (config sections as JSON)."""

    rule: str
    wildcards: dict[str, str]
    output: dict[str, Any]
    input: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> dict[str, Any]:
        """The configuration the job's command reads (``--cfg``)."""
        return json.loads(self.params["cfg"])


def _key(wildcards: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in wildcards.items()))


class Plan:
    """The jobs of one validated configuration (:func:`tmf.config.workflow_config`), checked first
    (:func:`tmf.plan.checks.check`): ``jobs(rule)``, ``job(rule, wildcards)``, ``outputs(rule)``."""

    def __init__(self, params: dict[str, Any]):
        check(params)
        self.params = params
        self._outputs = paths.outputs(params)
        self._jobs: dict[str, dict[tuple, Job]] = {rule: {} for rule in self._outputs}
        for stage in (self._data, self._appearance, self._pretrain, self._evaluate, self._report, self._dvc):
            for job in stage():
                self._jobs[job.rule][_key(job.wildcards)] = job

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
            return self._jobs[rule][_key(wildcards)]
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
            cfg = {"source": "synthetic", "synthetic": d["synthetic"]}
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
                  {"cfg": as_json(self.params["subsample"])})
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
        """Exactly what one method's pretraining depends on: the shared settings and its own method params."""
        pre = self.params["pretrain"]
        cfg = {k: v for k, v in pre.items() if k not in PRETRAIN_JOB_KEYS}
        cfg["method_params"] = {method: pre["method_params"][method]}
        return cfg

    def _pretrain(self) -> Iterator[Job]:
        pre = self.params["pretrain"]
        reads = {"manifest": paths.MANIFEST, "images": paths.PACKED_IMAGES}
        for method in pre["methods"]:
            for seed in pre["seeds"]:
                w = {"method": method, "seed": str(seed)}
                yield Job("pretrain", w, self.output("pretrain", **w), reads,
                          {"cfg": as_json(self.pretrain_cfg(method)), "device": self.params["device"]})

    def evaluation_cfg(self, protocol: str, method: str) -> dict[str, Any]:
        """Exactly what one evaluation job depends on: the shared settings and its own protocol's section."""
        protocol, _ = split_protocol(protocol)  # the head dimension is in the protocol name, not in the params
        ev = self.params["evaluate"]
        cfg = {k: ev[k] for k in EVALUATION_KEYS}
        if ev["test_set"] in HOLDOUT_TEST_SETS:
            cfg["holdout"] = ev["holdout"]
        if method == "imagenet":
            cfg["imagenet_weights"] = ev["imagenet_weights"]
        if protocol in FINETUNE_PROTOCOLS:
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
            protocols += [head_protocol(p, d) for d in ev["hyperbolic"]["dims"]] if p in HEAD_PROTOCOLS else [p]
        reads = {"manifest": paths.MANIFEST, "images": paths.PACKED_IMAGES, "labels": paths.PACKED_LABELS}
        metrics = []
        for protocol in protocols:
            base, _ = split_protocol(protocol)
            for method in methods:
                if not runs(base, method):
                    continue
                if method in TRAINED_BASELINES:
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
        yield Job("collect_evaluation", {}, self.output("collect_evaluation"), {"metrics": metrics})

    def _report(self) -> Iterator[Job]:
        """Per notebook: one job drawing its figures and tables (``report_items_<part>``, whose outputs are the
        items' files, one per instance), then the notebook showing them; last the index page."""
        source, dpi = self.params["data"]["source"], self.params["report"]["dpi"]
        reads = self._report_reads()
        shown: dict[str, list[list]] = {}
        for part in paths.NOTEBOOKS:
            entries = list(self._report_entries(part))
            drawn = [e for e in entries if report_items.item(e["name"]).kind != "output"]
            rule = f"report_items_{part}"
            self._outputs[rule] = {report_items.output_key(e["name"], e["keys"]): e["path"] for e in drawn}
            cfg = {"dpi": dpi, "source": source, "inputs": reads[part],
                   "items": [[e["name"], e["keys"], e["path"], e["inputs"]] for e in drawn]}
            yield Job(rule, {}, self.output(rule), {"files": _files(reads[part]) + [
                f for e in drawn for f in _files(e["inputs"])]},
                      {"cfg": as_json(cfg), "out_dir": paths.fill(paths.REPORT_ITEMS, {"part": part})})
            shown[part] = [[e["name"], e["keys"], e["path"]] for e in entries]
            rule = f"report_{part}"
            template = paths.fill(paths.NOTEBOOK_TEMPLATE, {"name": part})
            yield Job(rule, {}, self.output(rule), {"notebook": template, "shown": [e[2] for e in shown[part]]},
                      {"nb": as_json({"source": source, "items": shown[part]})})
        pages = [self.output(f"report_{part}")["html"] for part in paths.NOTEBOOKS]
        tables = [(e[0], e[2]) for part in paths.NOTEBOOKS for e in shown[part]
                  if report_items.item(e[0]).on_index]
        summaries = [j.output["summary"] for j in self.jobs("appearance_score")]
        aggregate = self.output("collect_evaluation")["aggregate"]
        yield Job("report_index", {}, self.output("report_index"),
                  {"pages": pages, "tables": [t[1] for t in tables], "summaries": summaries,
                   "evaluation": aggregate},
                  {"source": source,
                   "pages": [arg for part, page in zip(paths.NOTEBOOKS, pages, strict=True)
                             for arg in ("--page", part, REPORT_PAGES[part][0], page, REPORT_PAGES[part][1])],
                   "tables": [arg for name, path in tables for arg in ("--table", name, path)],
                   "summaries": [arg for s in summaries for arg in ("--appearance-summary", s)]})

    def _report_reads(self) -> dict[str, dict[str, Any]]:
        """What each notebook's items read (:class:`tmf.report.items.Context` ``inputs``)."""
        collected = self.output("collect_evaluation")
        classes = self.output("class_representativeness")
        return {
            "data": {"tiles": paths.TILES, "manifest": paths.MANIFEST, "class_shares": paths.CLASS_SHARES,
                     "images": paths.PACKED_IMAGES, "labels": paths.PACKED_LABELS},
            "appearance": {"summaries": {j.wildcards["encoder"]: j.output["summary"]
                                         for j in self.jobs("appearance_score")},
                           "coverage": {j.wildcards["encoder"]: j.output["coverage"]
                                        for j in self.jobs("appearance_score")},
                           "class_histograms_city": classes["city"]},
            "pretraining": {"runs": {f"{j.wildcards['method']}/seed{j.wildcards['seed']}":
                                     {"metrics": j.output["metrics"], "history": j.output["history"]}
                                     for j in self.jobs("pretrain")}},
            "evaluation": {"summary": collected["summary"], "aggregate": collected["aggregate"],
                           "runs": [j.output["metrics"] for j in self.jobs("evaluate")]},
        }

    def _report_entries(self, part: str) -> Iterator[dict[str, Any]]:
        """Every item instance a notebook shows: name, keys, path (its own file, or the output of the stage
        that writes it) and the inputs of its own (besides the part's)."""
        figures = {Path(p).stem: p for p in self.output("class_representativeness")["figures"]}
        confusions = self._confusion_runs()
        for item in report_items.items(part):
            if item.name in figures:
                yield {"name": item.name, "keys": {}, "path": figures[item.name], "inputs": {}}
            elif item.kind == "output" and item.per == ("encoder",):
                for job in self.jobs("appearance_figures"):
                    if item.name in job.output:
                        yield {"name": item.name, "keys": dict(job.wildcards), "path": job.output[item.name],
                               "inputs": {}}
            elif item.per:  # confusion matrices and predicted maps of one run per (protocol, method)
                for job in confusions:
                    keys = {k: job.wildcards[k] for k in item.per}
                    own = {"metrics": job.output["metrics"]}
                    path = job.output["predictions"] if item.kind == "output" else self._item_path(item, keys)
                    yield {"name": item.name, "keys": keys, "path": path, "inputs": own}
            else:
                yield {"name": item.name, "keys": {}, "path": self._item_path(item, {}), "inputs": {}}

    def _confusion_runs(self) -> list[Job]:
        """The evaluation job shown for each (protocol, method) of a pixel-level protocol: its largest label
        fraction, its first seed."""
        def rank(job: Job) -> tuple[float, int]:
            return float(job.wildcards["fraction"]), -int(job.wildcards["seed"])

        best: dict[tuple[str, str], Job] = {}
        for job in self.jobs("evaluate"):
            w = job.wildcards
            key = (w["protocol"], w["method"])
            if split_protocol(w["protocol"])[0] not in SCENE_PROTOCOLS and (key not in best or rank(job) > rank(best[key])):
                best[key] = job
        return list(best.values())

    @staticmethod
    def _item_path(item: report_items.Item, keys: dict[str, Any]) -> str:
        """``reports/<part>/<anchor>.png|.html``: an instance's file is named as its block in the notebook."""
        name = report_items.anchor(item.name, keys)
        return paths.fill(paths.REPORT_ITEM, {"part": item.part, "name": name}) + report_items.SUFFIX[item.kind]

    def _dvc(self) -> Iterator[Job]:
        if self.params["tracking"]["dvc"]:
            reads = [f for f in self.targets if f != paths.DVC_POINTER]
            yield Job("dvc_track", {}, self.output("dvc_track"), {"targets": reads})


def _files(value: Any) -> list[str]:
    """Every path of a (nested) dict or list of paths."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _files(v)]
    if isinstance(value, list):
        return [p for v in value for p in _files(v)]
    return [value]
