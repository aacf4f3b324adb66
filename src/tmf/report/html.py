"""HTML of the report's tables: cells formatted once (missing values as "—", scores in %, class names with their
colour), a table file that opens on its own (in ``snakemake --report``) and embeds in a notebook or the index."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from tmf.io import write_text

MISSING = "—"
TABLE_STYLE = """
table.tmf{border-collapse:collapse;margin:0.4em 0 1.2em;font-size:90%}
table.tmf td,table.tmf th{border:1px solid #ccc;padding:3px 8px;text-align:left !important;vertical-align:top}
table.tmf th{background:#f0f0f0}
table.tmf td.num{text-align:right !important;font-variant-numeric:tabular-nums;white-space:nowrap}
table.tmf caption{caption-side:top;text-align:left;padding:0 0 0.3em;color:#555}
"""
PAGE_STYLE = "body{font-family:system-ui,sans-serif;color:#222;margin:1em}"
_BEGIN, _END = "<!-- tmf-table -->", "<!-- /tmf-table -->"


@dataclass(frozen=True)
class Html:
    """Markup for a table cell or header. pandas keeps it as it is (an object), where it would store a ``str``,
    markup or not, as plain text."""

    html: str

    def __str__(self) -> str:
        return self.html


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT (a scalar)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def cell(value: Any) -> Markup:
    """One cell: markup as it is, a missing value as "—", a float with 4 significant digits, else escaped text."""
    if isinstance(value, Html):
        return Markup(value.html)
    if isinstance(value, Markup):
        return value
    if is_missing(value):
        return Markup(MISSING)
    if isinstance(value, float):
        return Markup(f"{value:.4g}")
    return escape(str(value))


def pct(mean: Any, std: Any = None, digits: int = 1) -> str:
    """A score in [0, 1] as "10.8 ± 3.9" (%), "10.8" without a spread, "—" when missing."""
    if is_missing(mean):
        return MISSING
    text = f"{100 * float(mean):.{digits}f}"
    return text if is_missing(std) else f"{text} ± {100 * float(std):.{digits}f}"


def number(mean: Any, std: Any = None, digits: int = 2) -> str:
    """A value as "0.76 ± 0.02", "0.76" without a spread, "—" when missing."""
    if is_missing(mean):
        return MISSING
    text = f"{float(mean):.{digits}f}"
    return text if is_missing(std) else f"{text} ± {float(std):.{digits}f}"


def fraction(value: Any) -> str:
    """A label fraction as a percentage: 0.01 → "1 %", 1.0 → "100 %"."""
    return MISSING if is_missing(value) else f"{100 * float(value):g} %"


def swatch(colour: str) -> Markup:
    return Markup('<span style="display:inline-block;width:0.85em;height:0.85em;margin-right:0.35em;'
                  f'vertical-align:-0.1em;border:1px solid #555;background:{escape(colour)}"></span>')


def class_name(class_id: int, short: bool = False) -> Html:
    """A MiniFrance class as its colour and name (the short name, the full one in a tooltip, when ``short``)."""
    from tmf.data.minifrance import CLASSES

    c = CLASSES[int(class_id)]
    if short:
        return Html(swatch(c.colour) + Markup(f'<span title="{escape(c.name)}">{escape(c.label)}</span>'))
    return Html(swatch(c.colour) + escape(c.name))


def _numeric(text: Markup) -> bool:
    return bool(re.fullmatch(r"[−\-+]?[\d.]+( ± [\d.]+)?( %)?", str(text)))


def render_table(frame, caption: str = "") -> Markup:
    """A DataFrame as ``<table class="tmf">``: headers and cells through :func:`cell`, numbers right-aligned, the
    caption (the data source) above it."""
    head = "".join(f"<th>{cell(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = [cell(v) for v in values]
        rows.append("<tr>" + "".join(f'<td class="num">{c}</td>' if _numeric(c) else f"<td>{c}</td>"
                                     for c in cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return Markup(f'<div style="overflow-x:auto"><table class="tmf">{cap}<thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(rows)}</tbody></table></div>')


def write_table(path: str | Path, title: str, table: Markup) -> Path:
    """A table file: a page of its own (title, style, the table between markers that :func:`table_fragment`
    finds)."""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{PAGE_STYLE}{TABLE_STYLE}</style></head>\n"
            f"<body>\n{_BEGIN}\n{table}\n{_END}\n</body></html>\n")
    write_text(path, page)
    return Path(path)


def table_fragment(path: str | Path) -> Markup:
    """The table of a file :func:`write_table` wrote, with the table style (to embed in another page)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        body = text[text.index(_BEGIN) + len(_BEGIN):text.index(_END)]
    except ValueError:
        raise ValueError(f"{path}: not a table written by tmf report-items (no {_BEGIN} marker)") from None
    return Markup(f"<style>{TABLE_STYLE}</style>{body.strip()}")
