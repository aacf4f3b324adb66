"""Every figure and table the report shows, one entry each (pure Python: the plan reads it, and the report's
figures and tables, :mod:`tmf.report`, are drawn from it).

An :class:`Item` is one file of ``reports/<part>/``, shown in the ``<part>`` notebook and, wrapped in ``report()``,
in ``snakemake --report`` under its category, with the caption ``workflow/report/<part>_<name>.rst``:

- ``figure`` (a PNG) and ``table`` (an HTML table) items are drawn by ``tmf report-items`` (rule
  ``report_items_<part>``) with the function of their name in :mod:`tmf.report.figures`, :mod:`tmf.report.scores`
  (the evaluation notebook's tables) or :mod:`tmf.report.tables`, which takes a :class:`tmf.report.items.Context`
  (the part's input files, the figure resolution, the data source) and the item's keys;
- ``output`` items are files another stage writes (the appearance figures, the predicted maps); the notebook shows
  them the same way.

An item with ``per`` keys is one file per value of those keys (the plan, :mod:`tmf.plan.jobs`, enumerates them).
To add a figure or a table: a function in ``figures.py`` / ``tables.py``, an entry here, its caption file and a
``show("<name>")`` cell in the notebook; the plan, the rule and ``snakemake --report`` follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("figure", "table", "output")
SUFFIX = {"figure": ".png", "table": ".html", "output": ".png"}


@dataclass(frozen=True)
class Item:
    part: str  # the notebook that shows it (tmf.plan.paths.NOTEBOOKS)
    name: str  # its function in figures.py / tables.py, its file stem and its anchor in the notebook's page
    kind: str  # figure | table | output
    title: str  # its heading in the notebook and its label in snakemake --report
    category: str  # snakemake --report category
    subcategory: str | None = None
    per: tuple[str, ...] = ()  # one file per value of these keys
    on_index: bool = False  # also shown on reports/index.html ("ours vs published")


ITEMS: tuple[Item, ...] = (
    # ---- data
    Item("data", "tiles_per_city", "table", "Tiles and sub-tiles per city (Table 2.4 layout)", "Data"),
    Item("data", "tiles_per_other_city", "table", "Cities that are not one of MiniFrance's 16", "Data"),
    Item("data", "off_spec_tiles", "table", "Tiles unlike the specification (CRS, resolution, georeference)",
         "Data"),
    Item("data", "class_shares", "table", "Class shares vs Tables 2.5 and 2.6 (Castillo-Navarro 2022)",
         "Ours vs published", on_index=True),
    Item("data", "class_share_bars", "figure", "Class shares vs Table 2.6", "Data"),
    Item("data", "subtile_mosaic", "figure", "Sample sub-tiles and their labels", "Data"),
    # ---- appearance (the figures are the appearance stage's outputs)
    Item("appearance", "coverage_vs_published", "table",
         "Per-split appearance coverage vs Table 2.7 (Castillo-Navarro 2022)", "Ours vs published", on_index=True),
    Item("appearance", "best_covering_city", "table", "Best covering training city of each test city", "Appearance"),
    *(Item("appearance", name, "output", title, "Appearance", per=("encoder",)) for name, title in (
        ("embedding_cities", "t-SNE embedding by city (Fig. 2.10)"),
        ("appearance_maps", "Appearance map of every city (Fig. 2.12)"),
        ("coverage_heatmaps", "IoU and IoT between cities (Fig. 2.13)"),
        ("split_maps", "Appearance map of every split (Fig. 2.17)"),
        ("class_scatter", "Class shares in the embedding (Fig. 2.15)"),
        ("overlay", "External images in the embedding (Fig. 2.18)"),
    )),
    Item("appearance", "class_histograms_by_city", "table", "Class histogram of every city (Fig. 2.14 as a table)",
         "Appearance"),
    *(Item("appearance", name, "output", title, "Data") for name, title in (
        ("class_histograms_city", "Class histogram of every city (Fig. 2.14)"),
        ("class_histograms_split", "Class histogram of every split (Fig. 2.16)"),
        ("colour_histograms", "Colour histograms by split (Fig. 2.4)"),
    )),
    # ---- pretraining
    Item("pretraining", "loss_curves", "figure", "Pretraining loss curves", "Pretraining"),
    Item("pretraining", "pretraining_runs", "table", "Every pretraining run", "Pretraining"),
    # ---- evaluation
    Item("evaluation", "test_sets", "table", "What the scores are on: the test set", "Evaluation"),
    Item("evaluation", "segmentation_vs_published", "table",
         "Segmentation, next to Table 3.1 (Castillo-Navarro 2022) where comparable", "Ours vs published", on_index=True),
    Item("evaluation", "semisupervised_comparison", "table",
         "Is semi-supervision worth it? U-Net runs vs Tables 3.1 and 3.3 (Castillo-Navarro 2022)", "Evaluation"),
    Item("evaluation", "modality_grid", "table",
         "Modalities: pretraining × downstream, mIoU (Table 4.3 of Berg 2024)", "Evaluation"),
    Item("evaluation", "scores_vs_fraction", "figure", "Scores against the label fraction", "Evaluation"),
    Item("evaluation", "per_class_iou", "table", "Per-class IoU", "Evaluation", "Per-class IoU"),
    Item("evaluation", "per_class_iou_bars", "figure", "Per-class IoU at the largest label fraction", "Evaluation",
         "Per-class IoU"),
    Item("evaluation", "per_city_scores", "table", "Scores per scored city (Table 2.3 layout)", "Evaluation"),
    Item("evaluation", "per_other_city_scores", "table", "Scores per scored city that is not one of MiniFrance's 16",
         "Evaluation"),
    Item("evaluation", "confusion", "figure", "Confusion matrix", "Evaluation", "Confusion matrices",
         per=("protocol", "method", "fraction", "seed")),
    Item("evaluation", "predictions", "output", "Predicted maps", "Evaluation", "Confusion matrices",
         per=("protocol", "method", "fraction", "seed")),
    Item("evaluation", "maps_per_city", "table", "Land-cover maps: the predicted class shares of each city", "Maps",
         per=("split",)),
    Item("evaluation", "map_previews", "output", "Land-cover maps of whole tiles, a few per city", "Maps",
         per=("split",)),
    Item("evaluation", "evaluation_runs", "table", "Every evaluation run", "Evaluation"),
)
BY_NAME: dict[str, Item] = {item.name: item for item in ITEMS}
assert len(BY_NAME) == len(ITEMS), "item names must be unique"
assert all(item.kind in KINDS for item in ITEMS)


def items(part: str | None = None, kinds: tuple[str, ...] = KINDS) -> list[Item]:
    """The items of one notebook (or all), of these kinds, in the order the notebook shows them."""
    return [i for i in ITEMS if (part is None or i.part == part) and i.kind in kinds]


def item(name: str) -> Item:
    try:
        return BY_NAME[name]
    except KeyError:
        from tmf.config import did_you_mean

        raise ValueError(f"unknown report item {name!r}{did_you_mean(name, BY_NAME)}") from None


def key_values(name: str, keys: dict[str, Any] | None) -> list[str]:
    """An instance's key values in the order of its item's ``per``."""
    keys = keys or {}
    return [str(keys[k]) for k in item(name).per if k in keys]


def anchor(name: str, keys: dict[str, Any] | None = None) -> str:
    """The id of an item's block in its notebook's page (``confusion-finetune-simclr-1-0``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", "-".join([name, *key_values(name, keys)]))


def output_key(name: str, keys: dict[str, Any] | None = None) -> str:
    """The item's name in its rule's ``output:`` (an identifier)."""
    return re.sub(r"\W", "_", "__".join([name, *key_values(name, keys)]))
