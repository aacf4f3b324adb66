"""``tmf report-items``, ``tmf report-notebook`` and ``tmf report-index``: the last stage of the workflow."""

from __future__ import annotations


def register(sub) -> None:
    from tmf.config import schema

    sources = schema()["properties"]["data"]["properties"]["source"]["enum"]
    p = sub.add_parser("report-items", help="draw the figures and tables one report notebook shows, one file each",
                       description="Draw the figures (PNG) and tables (HTML) of one notebook into OUT_DIR, as the "
                       "workflow's plan lists them (tmf.report.items).")
    p.add_argument("--out-dir", required=True, help="reports/<part>: every item's file lies under it")
    p.add_argument("--cfg", required=True, help="JSON: the part's input files, the figure resolution, the data "
                   "source and every item instance (what the workflow's plan passes)")
    p.set_defaults(func=_items)

    p = sub.add_parser("report-notebook", help="execute a notebook template with papermill and render it to HTML",
                       description="Execute a report notebook with papermill (parameters injected after its "
                       "`parameters` cell) and render it to self-contained HTML without its code; nothing is left "
                       "at the outputs when a cell raises.")
    p.add_argument("--template", required=True, help="notebook with a `parameters` cell")
    p.add_argument("--html", required=True, help="rendered HTML output")
    p.add_argument("--ipynb", required=True, help="executed notebook output (keeps the code)")
    p.add_argument("--parameters", default="{}", help="JSON object injected after the parameters cell")
    p.set_defaults(func=_notebook)

    p = sub.add_parser("report-index",
                       help="write reports/index.html: the findings, the notebooks, ours vs published",
                       description="Write reports/index.html: what this run found (sentences written from "
                       "summary_agg.csv and the appearance coverage), links to every notebook, and the "
                       "'ours vs published' tables.")
    p.add_argument("--out", required=True, help="reports/index.html")
    p.add_argument("--page", action="append", nargs=4, metavar=("PART", "TITLE", "HTML", "DESCRIPTION"), default=[],
                   help="a notebook page to link (repeatable)")
    p.add_argument("--table", action="append", nargs=2, metavar=("ITEM", "HTML"), default=[],
                   help="a table written by tmf report-items to show (repeatable)")
    p.add_argument("--source", required=True, choices=sources, help="data source of this run")
    p.add_argument("--appearance-summary", action="append", default=[],
                   help="results/appearance/<encoder>/summary.json (repeatable)")
    p.add_argument("--evaluation", help="results/evaluate/summary_agg.csv")
    p.set_defaults(func=_index)


def _items(args) -> int:
    import json

    from tmf.config import ParamsError
    from tmf.report.build import write_items

    try:
        cfg = json.loads(args.cfg)
    except json.JSONDecodeError as e:
        raise ParamsError(f"--cfg: not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ParamsError("--cfg: expected a JSON object")
    write_items(cfg, args.out_dir)
    return 0


def _notebook(args) -> int:
    import os

    from tmf.report.notebook import execute_notebook, parse_parameters

    execute_notebook(args.template, args.html, args.ipynb, parse_parameters(args.parameters), cwd=os.getcwd())
    return 0


def _index(args) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from tmf.report.findings import coverage_frame, findings
    from tmf.report.index import write_index
    from tmf.report.scores import segmentation_heading
    from tmf.report.tables import reference

    summaries = {}
    for path in args.appearance_summary:
        s = json.loads(Path(path).read_text())
        summaries[s.get("encoder", Path(path).parent.name)] = s
    agg = pd.read_csv(args.evaluation) if args.evaluation else None
    found = findings(agg, coverage_frame(summaries), reference()["appearance_coverage"])
    headings = {"segmentation_vs_published": segmentation_heading(agg["test_set"] if agg is not None else [])}
    write_index(args.out, [tuple(p) for p in args.page], [tuple(t) for t in args.table], args.source, found,
                headings)
    return 0
