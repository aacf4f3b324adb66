"""``reports/index.html``: the page a researcher opens first. It links every rendered notebook and shows the
headline "ours vs published" tables, labelled with the data source."""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tmf.io import write_text
from tmf.report.tables import source_label

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}
th{background:#f0f0f0}.banner{padding:0.6em 1em;background:#fff3cd;border:1px solid #e0c060;margin:1em 0}
li{margin:0.3em 0}
"""


def write_index(out: str | Path, pages: list[tuple[str, str, str]], tables: list[tuple[str, pd.DataFrame]],
                source: str, extra: str = "") -> None:
    """``pages``: (title, html path, one-line description); ``tables``: (heading, frame)."""
    out = Path(out)
    links = "\n".join(
        f'<li><a href="{html.escape(os.path.relpath(p, out.parent))}">{html.escape(t)}</a> — {html.escape(d)}</li>'
        for t, p, d in pages
    )
    body = "\n".join(
        f"<h3>{html.escape(h)}</h3>\n{df.to_html(index=False, na_rep='—', border=0)}" for h, df in tables
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tmf report</title><style>{STYLE}</style></head>
<body>
<h1>tmf: self-supervised learning on tinyMiniFrance</h1>
<div class="banner"><b>Data:</b> {html.escape(source_label(source))}</div>
<h2>Notebooks</h2>
<ul>
{links}
</ul>
<h2>Ours vs published</h2>
{body}
{extra}
<p><small>Generated {stamp} by <code>tmf report-index</code>.</small></p>
</body></html>
"""
    write_text(out, page)
