"""``reports/index.html``: the page a researcher opens first. It opens with what this run found (sentences
written from the numbers, :mod:`tmf.report.findings`, each linking to its table or figure), then links every
notebook and shows the "ours vs published" tables, under the data source of the run."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from markupsafe import Markup, escape

from tmf.io import write_text
from tmf.report.findings import Finding
from tmf.report.html import TABLE_STYLE, table_fragment
from tmf.report.items import anchor, item
from tmf.report.tables import source_label

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.banner{padding:0.6em 1em;background:#fff3cd;border:1px solid #e0c060;margin:1em 0}
li{margin:0.35em 0}.findings li{margin:0.5em 0;line-height:1.4}
"""


def write_index(out: str | Path, pages: list[tuple[str, str, str, str]], tables: list[tuple[str, str]],
                source: str, findings: list[Finding], headings: dict[str, str] | None = None) -> None:
    """``pages``: (part, title, html path, one-line description) per notebook; ``tables``: (item name, its
    file) of the tables shown here; ``findings``: the sentences of "What this run found"; ``headings``: a
    heading for a table that says more of this run than its item's title (which then links to the notebook)."""
    headings = headings or {}
    out = Path(out)
    href = {part: os.path.relpath(path, out.parent) for part, _, path, _ in pages}

    def link(name: str) -> Markup:
        spec = item(name)
        return Markup(f'<a href="{escape(href[spec.part])}#{escape(anchor(name))}">{escape(spec.title)}</a>')

    found = "\n".join(f"<li>{escape(f.text)} <small>(see {link(f.item)})</small></li>" for f in findings) or (
        "<li>Nothing to report: this run has no evaluation or appearance results.</li>")
    links = "\n".join(f'<li><a href="{escape(href[part])}">{escape(title)}</a> — {escape(desc)}</li>'
                      for part, title, _, desc in pages)
    body = "\n".join(
        f'<h3 id="{escape(anchor(name))}">'
        + (f"{escape(headings[name])} <small>({link(name)})</small>" if name in headings else link(name))
        + f"</h3>\n{table_fragment(path)}" for name, path in tables)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tmf report</title><style>{STYLE}{TABLE_STYLE}</style></head>
<body>
<h1>tmf: self-supervised learning on tinyMiniFrance</h1>
<div class="banner"><b>Data:</b> {escape(source_label(source))}</div>
<h2 id="findings">What this run found</h2>
<ul class="findings">
{found}
</ul>
<h2>Notebooks</h2>
<ul>
{links}
</ul>
<h2>Ours vs published</h2>
{body}
<p><small>Generated {stamp} by <code>tmf report-index</code>.</small></p>
</body></html>
"""
    write_text(out, page)
