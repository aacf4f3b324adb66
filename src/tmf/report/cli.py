"""``tmf report-notebook`` and ``tmf report-index``: the last stage of the workflow."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report-notebook", help="execute a notebook template with papermill and render it to HTML")
    p.add_argument("--template", required=True, help="notebook with a `parameters` cell")
    p.add_argument("--html", required=True, help="rendered HTML output")
    p.add_argument("--ipynb", required=True, help="executed notebook output")
    p.add_argument("--parameters", default="{}", help="JSON object injected after the parameters cell")
    p.set_defaults(func=_notebook)

    p = sub.add_parser("report-index", help="write reports/index.html linking every notebook")
    p.add_argument("--out", required=True)
    p.add_argument("--page", action="append", nargs=3, metavar=("TITLE", "HTML", "DESCRIPTION"), default=[],
                   help="a notebook page to link (repeatable)")
    p.add_argument("--source", required=True, help="data source of this run (synthetic, minifrance, dfc2022)")
    p.add_argument("--class-shares", help="data/tinyminifrance/class_shares.csv")
    p.add_argument("--appearance-summary", action="append", default=[],
                   help="results/appearance/<encoder>/summary.json (repeatable)")
    p.add_argument("--evaluation", help="results/evaluate/summary_agg.csv")
    p.set_defaults(func=_index)


def _notebook(args) -> int:
    import os

    from tmf.report.notebook import execute_notebook, parse_parameters

    execute_notebook(args.template, args.html, args.ipynb, parse_parameters(args.parameters), cwd=os.getcwd())
    return 0


def _index(args) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from tmf.plan import FIXMATCH_PROTOCOL, SEMISUPERVISED_BASELINES
    from tmf.report import tables
    from tmf.report.index import write_index

    frames = []
    for path in args.appearance_summary:
        summary = json.loads(Path(path).read_text())
        if summary.get("status", "ok") != "ok":
            continue
        frames.append(tables.coverage_comparison(path, args.source))
    if frames:
        frames = [("Appearance coverage vs Table 2.7 (seed 004)", pd.concat(frames, ignore_index=True))]
    if args.evaluation:
        seg = tables.segmentation_comparison(args.evaluation, args.source)
        if len(seg):
            frames.append(("Segmentation on the test cities vs Table 3.1 (seed 004)", seg))
        semi = tables.semisupervised_comparison(args.evaluation, args.source)
        if len(semi) and (semi["method"].isin(SEMISUPERVISED_BASELINES) | (semi["protocol"] == FIXMATCH_PROTOCOL)).any():
            frames.append(("Is semi-supervision worth it? U-Net runs vs Tables 3.1 / 3.3 (seed 004)", semi))
    if args.class_shares:
        frames.append(("tinyMiniFrance class shares vs Tables 2.5 / 2.6 (seed 004)",
                       tables.class_share_comparison(args.class_shares, args.source)))
    write_index(args.out, [tuple(p) for p in args.page], frames, args.source)
    return 0
