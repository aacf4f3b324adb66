"""``tmf report-items``: draw the figures and tables of one notebook, each into its own file (atomically).

The job's configuration (from the plan) lists the part's input files, the figure resolution, the data source and
every item instance: ``[name, keys, output path, inputs of its own]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tmf.report.items import Context, item

log = logging.getLogger(__name__)


def draw(name: str, ctx: Context, keys: dict[str, Any]):
    """The figure or the table of item ``name``: its function in figures.py, or in scores.py (the evaluation
    notebook's tables) or tables.py (the others)."""
    from tmf.report import figures, scores, tables

    spec = item(name)
    if spec.kind == "output":
        raise ValueError(f"report item {name!r} is written by another stage, not drawn by tmf report-items")
    module = figures if spec.kind == "figure" else scores if spec.part == "evaluation" else tables
    return getattr(module, name)(ctx, **keys)


def write_item(name: str, ctx: Context, keys: dict[str, Any], out: str | Path) -> Path:
    """Draw one item instance into ``out``: a PNG at ``ctx.dpi``, or an HTML table captioned with the source."""
    from tmf.io import atomic_path
    from tmf.report.html import render_table, write_table
    from tmf.report.tables import source_label

    out = Path(out)
    spec = item(name)
    result = draw(name, ctx, keys)
    if spec.kind == "figure":
        import matplotlib.pyplot as plt

        with atomic_path(out, suffix=".png") as tmp:
            result.savefig(tmp, dpi=ctx.dpi, format="png", bbox_inches="tight")
        plt.close(result)
    else:
        write_table(out, spec.title, render_table(result, f"Data: {source_label(ctx.source)}"))
    return out


def write_items(cfg: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Every item instance of ``cfg["items"]``, each a file under ``out_dir``."""
    for key in ("inputs", "items", "dpi", "source"):
        if key not in cfg:
            raise ValueError(f"tmf report-items --cfg: missing {key!r}")
    root = Path(out_dir).resolve()
    for _, _, out, _ in cfg["items"]:
        if not Path(out).resolve().is_relative_to(root):
            raise ValueError(f"tmf report-items: {out} is not under --out-dir {out_dir}")
    written = []
    for name, keys, out, own in cfg["items"]:
        ctx = Context({**cfg["inputs"], **own}, dpi=int(cfg["dpi"]), source=cfg["source"])
        written.append(write_item(name, ctx, keys, out))
        log.info("wrote %s", out)
    return written
