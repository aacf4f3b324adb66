"""What the report's figure and table functions read (:class:`Context`), beside the registry of every item
(:mod:`tmf.plan.items`, which the plan reads too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tmf.plan.items import ITEMS, Item, anchor, item, items, key_values, output_key

__all__ = ["ITEMS", "Context", "Item", "anchor", "item", "items", "key_values", "output_key"]


@dataclass(frozen=True)
class Context:
    """What an item's function reads: the part's input files (as the plan lists them), the figure resolution and
    the data source of the run."""

    inputs: dict[str, Any]
    dpi: int = 110
    source: str = "synthetic"
