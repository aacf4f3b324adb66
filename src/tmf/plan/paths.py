"""Where the workflow's files live: every path pattern, written once (Snakemake wildcards in braces).

Jobs' outputs and the inputs that read them are both formatted from these (:func:`fill`); the file formats are
in docs/file-formats.md.
"""

from __future__ import annotations

from typing import Any

from tmf.data.minifrance import SPLITS
from tmf.plan.names import MODAL_PROTOCOLS, has_elevation

# ---- data
RAW = "data/raw/{source}"  # the public layout, downloaded or generated
DOWNLOAD_CACHE = "data/.download"  # outside RAW, which Snakemake deletes when a job fails: a retry resumes here
TILES = "data/tiles.csv"
TINY = "data/tinyminifrance"
MANIFEST = f"{TINY}/manifest.csv"
CLASS_SHARES = f"{TINY}/class_shares.csv"
CROPS = [f"{TINY}/{split}" for split in SPLITS]
PACKED = f"{TINY}/packed"
PACKED_IMAGES = f"{PACKED}/images.npy"
PACKED_LABELS = f"{PACKED}/labels.npy"
PACKED_DEM = {"dem": f"{PACKED}/dem.npy", "dem_valid": f"{PACKED}/dem_valid.npy"}  # when the data has elevation

# ---- appearance (one folder per encoder) and class representativeness
APPEARANCE = "results/appearance/{encoder}"
APPEARANCE_FIGURES = ("embedding_cities", "appearance_maps", "coverage_heatmaps", "split_maps", "class_scatter")
OVERLAY_FIGURE = "overlay"  # Fig. 2.18, only with appearance.overlay_dir
CLASSES = "results/classes"
CLASS_FIGURES = ("class_histograms_city", "class_histograms_split", "colour_histograms")

# ---- pretraining, evaluation
PRETRAIN = "results/pretrain/{method}/seed{seed}"
EVALUATE = "results/evaluate/{protocol}/{method}/frac{fraction}/seed{seed}"
EVALUATION_SUMMARY = "results/evaluate/summary.csv"
EVALUATION_AGGREGATE = "results/evaluate/summary_agg.csv"  # beside the summary, as `tmf collect` writes it
MODALITY_GRID = "results/evaluate/modality_grid.csv"  # seed 000 Table 4.3's shape, with the multi-modal protocols

# ---- maps (one folder per split of predict.splits)
MAPS = "results/maps/{split}"

# ---- report
NOTEBOOK_TEMPLATE = "workflow/notebooks/{name}.ipynb"
NOTEBOOK = "reports/notebooks/{name}"  # .html and .ipynb
REPORT_ITEMS = "reports/{part}"  # the figures and tables of one notebook (tmf.report.items)
REPORT_ITEM = f"{REPORT_ITEMS}/{{name}}"  # name: the item's anchor (tmf.report.items.anchor); then .png or .html
REPORT_CAPTION = "workflow/report/{part}_{name}.rst"  # an item's caption, in the notebook and in snakemake --report
REPORT_INDEX = "reports/index.html"

# ---- versioning
DVC_POINTER = "data.dvc"  # the DVC step's output (workflow/rules/dvc.smk)


NOTEBOOKS = ("data", "appearance", "pretraining", "evaluation")  # report pages, from workflow/notebooks/


def outputs(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every rule's output patterns (wildcards in braces; lists where a job writes one file per seed)."""
    a = APPEARANCE
    modal = any(p in MODAL_PROTOCOLS for p in params["evaluate"]["protocols"])
    seeds = params["appearance"]["seeds"]
    figures = [*APPEARANCE_FIGURES, *([OVERLAY_FIGURE] if params["appearance"]["overlay_dir"] else [])]
    return {
        "generate": {"raw": fill(RAW, {"source": "synthetic"})},
        "fetch": {"raw": RAW},
        "index_tiles": {"tiles": TILES},
        "subsample": {"manifest": MANIFEST, "shares": CLASS_SHARES, "crops": CROPS},
        "pack": {"images": PACKED_IMAGES, "labels": PACKED_LABELS, **(PACKED_DEM if has_elevation(params) else {})},
        "appearance_encode": {"features": f"{a}/features.npy", "info": f"{a}/encoder.json"},
        "appearance_embed": {"embedding": f"{a}/embedding_seed{{seed}}.npy"},
        "appearance_score": {"summary": f"{a}/summary.json", "coverage": f"{a}/coverage_summary.csv",
                             "splits": f"{a}/split_coverage_summary.csv",
                             "surfaces": [f"{a}/surfaces_seed{s}.npz" for s in seeds]},
        "appearance_overlay": {"overlay": f"{a}/overlay.npz"},
        "appearance_figures": {name: f"{a}/figures/{name}.png" for name in figures},
        "class_representativeness": {"city": f"{CLASSES}/class_histograms_city.csv",
                                     "split": f"{CLASSES}/class_histograms_split.csv",
                                     "colours": f"{CLASSES}/colour_histograms.csv",
                                     "figures": [f"{CLASSES}/figures/{name}.png" for name in CLASS_FIGURES]},
        "pretrain": {"encoder": f"{PRETRAIN}/encoder.pt", "metrics": f"{PRETRAIN}/metrics.json",
                     "history": f"{PRETRAIN}/history.csv"},
        "evaluate": {"metrics": f"{EVALUATE}/metrics.json", "predictions": f"{EVALUATE}/predictions.png"},
        # the evaluation job named by predict.*: the same job, also saving its trained model
        "evaluate_model": {"metrics": f"{EVALUATE}/metrics.json", "predictions": f"{EVALUATE}/predictions.png",
                           "model": f"{EVALUATE}/model.pt"},
        "predict": {"index": f"{MAPS}/maps.csv", "maps": f"{MAPS}/tiles"},  # maps: tiles/<City>/<stem>.tif
        "map_previews": {"previews": f"{MAPS}/previews"},  # <City>.png
        "collect_evaluation": {"summary": EVALUATION_SUMMARY, "aggregate": EVALUATION_AGGREGATE,
                               **({"grid": MODALITY_GRID} if modal else {})},
        **{f"report_items_{name}": {} for name in NOTEBOOKS},  # one file per item: filled in by the plan
        **{f"report_{name}": {"html": fill(NOTEBOOK, {"name": name}) + ".html",
                              "ipynb": fill(NOTEBOOK, {"name": name}) + ".ipynb"} for name in NOTEBOOKS},
        "report_index": {"index": REPORT_INDEX},
        "dvc_track": {"pointer": DVC_POINTER},
    }


def fill(pattern: Any, wildcards: dict[str, Any]) -> Any:
    """A pattern (or a dict / list of them) with its wildcards replaced by values; others are left as they are,
    so a pattern can be filled in steps."""
    if isinstance(pattern, dict):
        return {k: fill(v, wildcards) for k, v in pattern.items()}
    if isinstance(pattern, list):
        return [fill(v, wildcards) for v in pattern]
    return pattern.format_map(_Keep(wildcards))


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
