"""What the report notebooks call to show the workflow's figures and tables: ``show("name", ...)``.

A notebook gets its items as a parameter (``items``: ``[name, keys, path]`` per instance, from the plan) and shows
each file as it is, under its title and above its caption (``workflow/report/<part>_<name>.rst``, the text
``snakemake --report`` shows), in a block whose id the index page links to (:func:`tmf.report.items.anchor`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from markupsafe import Markup, escape

from tmf.plan import paths
from tmf.report.html import fraction, table_fragment
from tmf.report.items import anchor, item


def caption(name: str, keys: dict[str, Any] | None = None, root: str | Path = ".") -> str:
    """An item's caption file rendered as ``snakemake --report`` does (Jinja, the keys as wildcards), as text."""
    import jinja2

    spec = item(name)
    path = Path(root) / paths.fill(paths.REPORT_CAPTION, {"part": spec.part, "name": name})
    if not path.is_file():
        raise FileNotFoundError(f"caption of report item {name!r} not found: {path}")
    text = jinja2.Template(path.read_text(encoding="utf-8")).render(
        snakemake=SimpleNamespace(wildcards=SimpleNamespace(**(keys or {}))))
    return " ".join(text.split())


def describe(name: str, keys: dict[str, Any]) -> str:
    """An instance's keys as a heading: ``finetune · simclr · 100 % of the labels · seed 0``."""
    words = []
    for k in item(name).per:
        v = keys[k]
        words.append(f"{fraction(v)} of the labels" if k == "fraction" else f"{k} {v}" if k in ("seed", "split")
                     else str(v))
    return " · ".join(words)


def _png(path: Path, alt: str) -> Markup:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return Markup(f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">')


def block(name: str, keys: dict[str, Any], path: str | Path, root: str | Path = ".", heading: str = "h3") -> Markup:
    """One item instance as HTML: its title, the figure (inline PNG) or the table, its caption. An ``output`` item
    may be a folder of PNGs (one per city of the map previews, known only once the stage has run): each is shown
    under its name."""
    spec = item(name)
    path = Path(root) / path
    if spec.kind == "output" and path.is_dir():
        pngs = sorted(path.glob("*.png"))
        body = Markup("").join(Markup(f"<h5>{escape(p.stem)}</h5>") + _png(p, f"{spec.title}: {p.stem}")
                               for p in pngs) or Markup("<p>none</p>")
    elif not path.is_file():
        raise FileNotFoundError(f"report item {name!r}: {path} not found")
    elif spec.kind == "table":
        body = table_fragment(path)
    else:
        body = _png(path, spec.title)
    return Markup(f'<section id="{escape(anchor(name, keys))}"><{heading}>{escape(spec.title)}</{heading}>{body}'
                  f'<p style="color:#444;font-size:90%;max-width:60em">{escape(caption(name, keys, root))}</p>'
                  "</section>")


class Items:
    """The items a notebook shows: ``Items(items).show("tiles_per_city")``; ``show("confusion", "predictions")``
    shows each instance of the first name with the matching instance of the others, under one heading."""

    def __init__(self, entries: list[list[Any]], root: str | Path = "."):
        self.entries = [(name, dict(keys), path) for name, keys, path in entries]
        self.root = root
        for name, _, _ in self.entries:
            item(name)  # an unknown name is an error now, not a missing figure later

    def html(self, *names: str) -> Markup:
        for name in names:
            item(name)
        groups: dict[tuple, list] = {}
        for name, keys, path in self.entries:
            if name in names:
                groups.setdefault(tuple(sorted(keys.items())), []).append((names.index(name), name, keys, path))
        out = []
        for keys, members in groups.items():
            nested = bool(keys)
            if nested:
                out.append(f"<h3>{escape(describe(members[0][1], dict(keys)))}</h3>")
            for _, name, k, path in sorted(members, key=lambda m: m[0]):
                out.append(block(name, k, path, self.root, "h4" if nested else "h3"))
        return Markup("".join(out))

    def show(self, *names: str) -> None:
        from IPython.display import HTML, display

        display(HTML(str(self.html(*names))))


def banner(source: str) -> None:
    """The data source of the run, at the top of a notebook."""
    from IPython.display import HTML, display

    from tmf.report.tables import source_label

    display(HTML(f'<p style="padding:0.5em 1em;background:#fff3cd;border:1px solid #e0c060"><b>Data:</b> '
                 f"{escape(source_label(source))}</p>"))
