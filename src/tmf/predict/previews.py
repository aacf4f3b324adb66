"""What the report shows of the maps: one preview per city (a few tiles, each image above its map in the
MiniFrance colours, with a legend of the predicted classes) and the table of predicted class shares per city.

Previews read decimated copies of the tiles and maps (rasterio ``out_shape``: overviews when the file has them),
never a whole 10,000 px tile; a map is decimated by the most frequent class of each block (``mode``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tmf.data.checks import open_raster
from tmf.data.minifrance import CLASSES, COLOURS, SCORED_IDS, city_rank
from tmf.io import atomic_path

log = logging.getLogger(__name__)

PANEL_PX = 320  # longest side of a preview panel, in pixels of the decimated tile


def thumbnail(path: str | Path, bands: tuple[int, ...], categorical: bool, side: int = PANEL_PX) -> np.ndarray:
    """A decimated read of ``path`` with its longest side at most ``side`` px: (h, w, bands) or (h, w)."""
    from rasterio.enums import Resampling

    with open_raster(Path(path)) as src:
        scale = max(src.height, src.width) / side
        shape = (src.height, src.width) if scale <= 1 else (max(1, round(src.height / scale)),
                                                             max(1, round(src.width / scale)))
        arr = src.read(bands, out_shape=(len(bands), *shape),
                       resampling=Resampling.mode if categorical else Resampling.average)
    return arr[0] if len(bands) == 1 else np.moveaxis(arr, 0, -1)


def shown_tiles(city_rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` of a city's tiles spread evenly over them in index order (deterministic)."""
    if n >= len(city_rows):
        return city_rows
    pick = np.unique(np.linspace(0, len(city_rows) - 1, n).round().astype(int))
    return city_rows.iloc[pick]


def city_preview(city_rows: pd.DataFrame, index_dir: Path, root: Path, path: str | Path, n_tiles: int,
                 dpi: int) -> None:
    """One city's preview PNG: ``n_tiles`` tiles side by side, image above map; legend of the city's classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from tmf.evaluate.figures import colourise

    show = shown_tiles(city_rows, n_tiles)
    n = len(show)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n + 0.4, 5.2), squeeze=False)
    for j, r in enumerate(show.itertuples(index=False)):
        image = thumbnail(root / r.image, (1, 2, 3), categorical=False)
        labels = thumbnail(index_dir / r.map, (1,), categorical=True)
        for ax, panel in zip(axes[:, j], (image, colourise(labels)), strict=True):
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        grid = r.crs if r.georeferenced else "no georeference"
        axes[0, j].set_title(f"{r.tile}\n{r.height} x {r.width} px, {grid}", fontsize=7)
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("predicted map", fontsize=9)
    counts = city_rows[[f"count_{i}" for i in range(len(CLASSES))]].sum().to_numpy()
    present = [i for i in range(len(CLASSES)) if counts[i] > 0]
    handles = [Patch(facecolor=COLOURS[i], edgecolor="k", linewidth=0.3, label=f"{i} {CLASSES[i].name}")
               for i in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, max(1, len(handles))), fontsize=6.5,
               frameon=False)
    first = city_rows.iloc[0]
    fig.suptitle(f"{first.city} ({first.split})\n{len(show)} of {len(city_rows)} tile(s), predicted by "
                 f"{first.model}", fontsize=8)
    rows_of_legend = -(-len(handles) // 3)
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.02, 1, 0.93))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def write_previews(index: str | Path, root: str | Path, out: str | Path, n_tiles: int, dpi: int) -> list[Path]:
    """``out/<City>.png`` for every city of the map index ``index`` (images read under ``root``)."""
    from tmf.predict.run import read_index

    index = Path(index)
    table = read_index(index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for city in sorted(set(table["city"]), key=city_rank):
        path = out / f"{city}.png"
        city_preview(table[table["city"] == city], index.parent, Path(root), path, n_tiles, dpi)
        written.append(path)
    log.info("wrote %d preview(s) under %s", len(written), out)
    return written


def city_table(index: str | Path) -> pd.DataFrame:
    """Per city: tiles, megapixels, tiles without georeference, and the predicted share (%) of every scored class
    present (columns ``<id> <name>``), in Table 2.4's city order."""
    from tmf.predict.run import read_index

    table = read_index(index)
    rows = []
    for city in sorted(set(table["city"]), key=city_rank):
        t = table[table["city"] == city]
        counts = t[[f"count_{i}" for i in SCORED_IDS]].sum()
        total = max(int(counts.sum()), 1)
        rows.append({"city": city, "tiles": len(t), "Mpx": round(float((t["height"] * t["width"]).sum()) / 1e6, 2),
                     "without georeference": int((t["georeferenced"] == 0).sum()),
                     **{f"{i} {CLASSES[i].name}": round(100.0 * int(counts[f"count_{i}"]) / total, 1)
                        for i in SCORED_IDS}})
    out = pd.DataFrame(rows)
    present = [c for c in out.columns[4:] if out[c].sum() > 0]
    return out[[*out.columns[:4], *present]]
