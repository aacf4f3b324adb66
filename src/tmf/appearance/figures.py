"""Figures of the appearance and class-representativeness analysis (seed 004 Figs. 2.4, 2.10, 2.12–2.18).

matplotlib with the Agg backend; class colours from ``tmf.data.minifrance``. Each figure is one PNG written
atomically; ``docs/appearance.md`` lists them with a caption each.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tmf.data.minifrance import CITY_NAMES, CLASSES, REPRESENTATIVENESS_IDS, SPLITS  # noqa: E402
from tmf.io import atomic_path, read_json  # noqa: E402

APPEARANCE_FIGURES = ("embedding_cities", "appearance_maps", "coverage_heatmaps", "split_maps", "class_scatter")
SPLIT_COLOURS = {"labeled": "#d62728", "unlabeled": "#1f77b4", "test": "#2ca02c", "training": "#9467bd"}


def _save(fig, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _short(name: str) -> str:
    return name.split("_")[0] if name.startswith("Lille") else name.replace("_", " ")


OTHER_CITY_MARK = " †"  # a city folder that is not one of MiniFrance's 16 (tiles.csv: minifrance_city = 0)


def _label(name: str) -> str:
    """A city's name on a figure, marked when it is not one of MiniFrance's 16 (the unions are not cities)."""
    from tmf.appearance.coverage import UNION_TEST, UNION_TRAIN

    other = name not in CITY_NAMES and name not in (UNION_TRAIN, UNION_TEST)
    return _short(name) + (OTHER_CITY_MARK if other else "")


def _city_colours(cities: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    order = [c for c in CITY_NAMES if c in cities] + sorted(set(cities) - set(CITY_NAMES))
    return {c: cmap(i % 20) for i, c in enumerate(order)}


def placeholder_figure(path: str | Path, title: str, message: str, dpi: int = 110) -> Path:
    """A figure that states why there is nothing to draw (e.g. an encoder skipped for missing weights)."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, "\n".join(_wrap(message, 80)), ha="center", va="center", fontsize=8, wrap=True)
    return _save(fig, path, dpi)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def embedding_figure(embedding: np.ndarray, cities: np.ndarray, splits: np.ndarray, path, dpi=110, title=""):
    """Fig. 2.10: the t-SNE embedding, one colour per city, marker by split."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    colours = _city_colours(list(dict.fromkeys(cities.tolist())))
    markers = {"labeled": "s", "unlabeled": "^", "test": "o"}
    for city, col in colours.items():
        m = cities == city
        split = splits[m][0] if m.any() else "test"
        ax.scatter(embedding[m, 0], embedding[m, 1], s=6, color=col, marker=markers.get(split, "o"),
                   label=f"{_label(city)} ({split})", linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of sub-tile features, coloured by city")
    ax.legend(fontsize=6, markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path, dpi)


def appearance_maps_figure(embedding, cities, surfaces: dict, bounds, path, dpi=110, skipped=None):
    """Fig. 2.12: one panel per city: its one-class-SVM surface (shaded) and its points, over all points (grey)."""
    names = list(dict.fromkeys(cities.tolist()))
    order = [c for c in CITY_NAMES if c in names] + sorted(set(names) - set(CITY_NAMES))
    ncol = 4
    nrow = max(1, math.ceil(len(order) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 3 * nrow), squeeze=False)
    colours = _city_colours(order)
    for ax, city in zip(axes.ravel(), order, strict=False):
        ax.scatter(embedding[:, 0], embedding[:, 1], s=1, color="0.85", linewidths=0)
        if city in surfaces:
            ax.imshow(np.ma.masked_where(~surfaces[city], surfaces[city]), origin="lower", extent=bounds,
                      cmap=matplotlib.colors.ListedColormap([colours[city]]), alpha=0.35, aspect="auto")
            ax.contour(surfaces[city].astype(float), levels=[0.5], origin="lower", extent=bounds,
                       colors=[colours[city]], linewidths=0.8)
        else:
            ax.text(0.5, 0.02, "no surface: " + (skipped or {}).get(city, "")[:40], transform=ax.transAxes,
                    fontsize=6, ha="center")
        m = cities == city
        ax.scatter(embedding[m, 0], embedding[m, 1], s=3, color=colours[city], linewidths=0)
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        ax.set_title(_label(city), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(order):]:
        ax.axis("off")
    return _save(fig, path, dpi)


def coverage_heatmaps_figure(cov_summary: pd.DataFrame, path, dpi=110):
    """Fig. 2.13: IoU and IoT heatmaps, training cities (+ their union) × test cities (+ their union),
    mean over t-SNE seeds (annotated mean, ± std below when several seeds)."""
    rows = list(dict.fromkeys(cov_summary["train"]))
    cols = list(dict.fromkeys(cov_summary["test"]))
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.2 + 0.75 * len(cols)), 1.2 + 0.55 * len(rows)))
    for ax, metric, label in zip(axes, ("iou", "iot"), ("IoU", "IoT (intersection over test)"), strict=True):
        mean = cov_summary.pivot(index="train", columns="test", values=f"{metric}_mean").reindex(index=rows,
                                                                                                 columns=cols)
        std = cov_summary.pivot(index="train", columns="test", values=f"{metric}_std").reindex(index=rows,
                                                                                               columns=cols)
        im = ax.imshow(mean.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Blues")
        for i in range(len(rows)):
            for j in range(len(cols)):
                v, s = mean.iat[i, j], std.iat[i, j]
                if np.isnan(v):
                    continue
                txt = f"{v:.2f}" + (f"\n±{s:.2f}" if not np.isnan(s) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize=5.5, color="white" if v > 0.6 else "black")
        ax.set_xticks(range(len(cols)), [_label(c) for c in cols], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=7)
        for tick in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            if tick.get_text().endswith(OTHER_CITY_MARK):
                tick.set_color("0.4")
        ax.axhline(len(rows) - 1.5, color="k", lw=0.8)
        ax.axvline(len(cols) - 1.5, color="k", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("test", fontsize=8)
        ax.set_ylabel("training", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.04)
    if any(_label(c).endswith(OTHER_CITY_MARK) for c in rows + cols):
        fig.text(0.01, 0.0, f"{OTHER_CITY_MARK.strip()} not one of MiniFrance's 16 cities (its own city, in the split "
                 "its folder names)", fontsize=6, color="0.4")
    fig.tight_layout()
    return _save(fig, path, dpi)


def split_maps_figure(embedding, splits, split_surfaces: dict, bounds, split_summary: pd.DataFrame | None, path,
                      dpi=110):
    """Fig. 2.17: the labeled, unlabeled and test surfaces (and their points); the test contour is drawn on
    the training panels; panel titles give the Table 2.7 scores (mean over seeds)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    test = split_surfaces.get("test")
    for ax, split in zip(axes, SPLITS, strict=True):
        surf = split_surfaces.get(split)
        ax.scatter(embedding[:, 0], embedding[:, 1], s=1, color="0.85", linewidths=0)
        col = SPLIT_COLOURS[split]
        if surf is not None:
            ax.imshow(np.ma.masked_where(~surf, surf), origin="lower", extent=bounds, alpha=0.3, aspect="auto",
                      cmap=matplotlib.colors.ListedColormap([col]))
        m = splits == split
        ax.scatter(embedding[m, 0], embedding[m, 1], s=2, color=col, linewidths=0)
        title = f"{split} split"
        if split != "test" and test is not None:
            ax.contour(test.astype(float), levels=[0.5], origin="lower", extent=bounds, colors="k", linewidths=0.7)
            if split_summary is not None:
                r = split_summary[(split_summary["train_split"] == split) & (split_summary["test_split"] == "test")]
                if len(r):
                    r = r.iloc[0]
                    title += f"\nvs test: IoU {r['iou_mean']:.2f}, IoT {r['iot_mean']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, dpi)


def class_scatter_figure(embedding, shares: np.ndarray, path, dpi=110):
    """Fig. 2.15: one panel per class (12), each sub-tile coloured by the share of its pixels in that class."""
    fig, axes = plt.subplots(3, 4, figsize=(12, 9))
    order = np.arange(len(embedding))
    for ax, (k, cid) in zip(axes.ravel(), enumerate(REPRESENTATIVENESS_IDS), strict=True):
        s = shares[:, k]
        o = order[np.argsort(np.nan_to_num(s, nan=-1.0), kind="stable")]  # darkest on top
        sc = ax.scatter(embedding[o, 0], embedding[o, 1], c=s[o], s=3, cmap="Blues", vmin=0, vmax=1,
                        linewidths=0, plotnonfinite=True)
        ax.set_title(_class_label(cid), fontsize=8, color=CLASSES[cid].colour)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, fraction=0.02, label="share of the sub-tile's pixels")
    return _save(fig, path, dpi)


def _class_label(cid: int) -> str:
    name = CLASSES[cid].name
    return name if len(name) <= 32 else name[:30] + "…"


def class_histogram_figure(hist: pd.DataFrame, path, dpi=110):
    """Fig. 2.14 (rows = cities) / Fig. 2.16 (rows = splits): % of each of the 12 classes, bars in the class
    colours, named in the legend under the panels."""
    ids = [c for c in hist.columns if isinstance(c, (int, np.integer))]
    n = len(hist)
    ncol = 4 if n > 4 else max(n, 1)
    nrow = max(1, math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow + 0.9), squeeze=False, sharey=True,
                             layout="constrained")
    colours = [CLASSES[c].colour for c in ids]
    for ax, (name, row) in zip(axes.ravel(), hist.iterrows(), strict=False):
        vals = row[ids].to_numpy(dtype=float)
        ax.bar(range(len(ids)), np.nan_to_num(vals), color=colours, edgecolor="0.3", linewidth=0.3)
        present = int((vals > 0).sum())
        ax.set_title(f"{_short(str(name))} ({present} classes)" if not np.isnan(vals).all()
                     else f"{_short(str(name))} (no labels)", fontsize=8)
        ax.set_xticks([])  # the classes are the bars' colours, named in the legend
        ax.set_ylim(0, 100)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of pixels", fontsize=8)
    handles = [matplotlib.patches.Patch(facecolor=CLASSES[c].colour, edgecolor="0.3", label=CLASSES[c].name)
               for c in ids]
    fig.legend(handles=handles, loc="outside lower center", ncol=3 if ncol > 2 else 2, fontsize=7, frameon=False)
    return _save(fig, path, dpi)


def colour_histogram_figure(colours: pd.DataFrame, path, dpi=110):
    """Fig. 2.4: per-channel colour histograms, one panel per split (training splits left, test right)."""
    groups = list(dict.fromkeys(colours["group"]))
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4 * max(len(groups), 1), 3), squeeze=False,
                             sharey=True)
    for ax, g in zip(axes.ravel(), groups, strict=False):
        sub = colours[colours["group"] == g]
        for ch, col in zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"), strict=True):
            c = sub[sub["channel"] == ch]
            ax.plot(c["value"], c["density"], color=col, lw=1, label=ch)
        ax.set_title(f"{g} split", fontsize=9)
        ax.set_xlabel("pixel value")
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path, dpi)


def overlay_figure(embedding, shares_urban, overlay, path, dpi=110, label="external"):
    """Fig. 2.18: the joint t-SNE of the sub-tiles (shaded by their urban-fabric share) and the external
    images (red stars)."""
    fig, ax = plt.subplots(figsize=(7, 6))
    sc = ax.scatter(embedding[:, 0], embedding[:, 1], c=np.nan_to_num(shares_urban), cmap="Blues", vmin=0, vmax=1,
                    s=4, linewidths=0)
    ax.scatter(overlay[:, 0], overlay[:, 1], marker="*", s=60, color="#d62728", edgecolors="k", linewidths=0.3,
               label=f"{label} ({len(overlay)})")
    fig.colorbar(sc, ax=ax, fraction=0.04, label="urban fabric share (sub-tiles)")
    ax.legend(fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path, dpi)


def appearance_figures(manifest_path, result_dir, out_dir=None, seed=None, overlay=None, dpi=110) -> list[Path]:
    """Draw every appearance figure of one encoder from its result folder (docs/appearance.md)."""
    from tmf.appearance.analysis import load_surfaces
    from tmf.appearance.classes import subtile_class_shares
    from tmf.data.packed import read_manifest

    result_dir = Path(result_dir)
    out_dir = Path(out_dir) if out_dir else result_dir / "figures"
    summary = read_json(result_dir / "summary.json")
    names = list(APPEARANCE_FIGURES) + (["overlay"] if overlay else [])
    if summary.get("status") != "ok":
        msg = f"encoder {summary.get('encoder')} skipped: {summary.get('reason', '')}"
        return [placeholder_figure(out_dir / f"{n}.png", n.replace("_", " "), msg, dpi) for n in names]
    manifest = read_manifest(manifest_path)
    seed = summary["seeds"][0] if seed is None else seed
    emb = np.load(result_dir / f"embedding_seed{seed}.npy")
    surf = load_surfaces(result_dir / f"surfaces_seed{seed}.npz")
    cities = manifest["city"].to_numpy()
    splits = manifest["split"].to_numpy()
    enc = summary.get("encoder", "")
    out = [
        embedding_figure(emb, cities, splits, out_dir / "embedding_cities.png", dpi,
                         f"t-SNE of {enc} features (seed {seed}), coloured by city"),
        appearance_maps_figure(emb, cities, surf["surfaces"], surf["bounds"], out_dir / "appearance_maps.png", dpi,
                               summary.get("skipped_cities")),
        coverage_heatmaps_figure(pd.read_csv(result_dir / "coverage_summary.csv"),
                                 out_dir / "coverage_heatmaps.png", dpi),
        split_maps_figure(emb, splits, surf["split_surfaces"], surf["bounds"],
                          pd.read_csv(result_dir / "split_coverage_summary.csv"), out_dir / "split_maps.png", dpi),
        class_scatter_figure(emb, subtile_class_shares(manifest), out_dir / "class_scatter.png", dpi),
    ]
    if overlay:
        with np.load(overlay) as z:
            joint, ext = z["embedding"], z["overlay"]
        if len(joint):
            urban = subtile_class_shares(manifest)[:, list(REPRESENTATIVENESS_IDS).index(1)]
            out.append(overlay_figure(joint, urban, ext, out_dir / "overlay.png", dpi))
        else:
            out.append(placeholder_figure(out_dir / "overlay.png", "overlay", "no overlay embedding", dpi))
    return out
