"""The report's jobs: per notebook, the job drawing its figures and tables (``report_items_<part>``) and the
notebook itself (``report_<part>``), then the index page; what each item reads and where its file goes. A part of
:class:`tmf.plan.jobs.Plan` (the stages' jobs are planned first: the report reads their outputs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tmf.plan import items as report_items
from tmf.plan import paths
from tmf.plan.job import Job, as_json, files
from tmf.plan.names import SCENE_PROTOCOLS, split_protocol

REPORT_PAGES = {  # notebook: (title on reports/index.html, what it shows)
    "data": ("Data and tinyMiniFrance", "tiles, sub-tiles and class shares vs Tables 2.4–2.6"),
    "appearance": ("Appearance analysis",
                   "t-SNE + one-class SVM coverage of the test cities by the training cities, vs Table 2.7"),
    "pretraining": ("Pretraining", "loss curves and embedding diagnostics of every (method, seed)"),
    "evaluation": ("Evaluation",
                   "segmentation scores of every protocol × method × label fraction on the test set "
                   "(evaluate.test_set), vs Table 3.1 where it is the test cities; land-cover maps of whole tiles"),
}


class ReportJobs:
    """The report stage of a :class:`tmf.plan.jobs.Plan` (which provides ``params``, ``jobs``, ``output`` and
    ``_outputs``)."""

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
            yield Job(rule, {}, self.output(rule), {"files": files(reads[part]) + [
                f for e in drawn for f in files(e["inputs"])]},
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
            elif item.per == ("split",):  # the land-cover maps of each split of predict.splits
                for job in self.jobs("map_previews"):
                    keys = {"split": job.wildcards["split"]}
                    if item.kind == "output":
                        yield {"name": item.name, "keys": keys, "path": job.output["previews"], "inputs": {}}
                    else:
                        yield {"name": item.name, "keys": keys, "path": self._item_path(item, keys),
                               "inputs": {"index": job.input["index"]}}
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
