"""Figures shared by the report notebooks. Each function takes file paths of earlier stages and returns a
matplotlib Figure; notebooks only display them (the kernel's inline backend renders them into the page)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tmf.data.minifrance import CLASSES, COLOURS, REPRESENTATIVENESS_IDS, colour_table


def class_share_bars(comparison: pd.DataFrame, dpi: int = 110):
    """Bars of our class shares next to Table 2.6, one pair per class."""
    df = comparison[comparison["id"].isin(REPRESENTATIVENESS_IDS)]
    x = np.arange(len(df))
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=dpi)
    ax.bar(x - 0.2, df["ours %"], 0.4, color=[COLOURS[i] for i in df["id"]], edgecolor="k", label="ours")
    ax.bar(x + 0.2, df["Table 2.6 %"], 0.4, color="white", edgecolor="k", hatch="//", label="Table 2.6")
    ax.set_xticks(x, [f"{i}" for i in df["id"]])
    ax.set_xlabel("class id")
    ax.set_ylabel("% of labelled pixels")
    ax.legend()
    fig.tight_layout()
    return fig


def subtile_mosaic(manifest_csv: str | Path, packed_dir: str | Path, per_split: int = 6, seed: int = 0,
                   dpi: int = 110):
    """A few sub-tiles of each split, image above its label map in the class colours."""
    from tmf.data.packed import open_packed

    packed = open_packed(manifest_csv, packed_dir)
    manifest, images, labels = packed.manifest, packed.images, packed.labels
    rng = np.random.default_rng(seed)
    splits = ["labeled", "unlabeled", "test"]
    fig, axes = plt.subplots(2 * len(splits), per_split, figsize=(1.6 * per_split, 3.3 * len(splits)), dpi=dpi)
    table = colour_table()
    for s, split in enumerate(splits):
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        pick = np.sort(rng.choice(rows, size=min(per_split, len(rows)), replace=False)) if len(rows) else []
        for j in range(per_split):
            for k in (0, 1):
                axes[2 * s + k, j].axis("off")
            if j >= len(pick):
                continue
            i = pick[j]
            axes[2 * s, j].imshow(images[i])
            axes[2 * s, j].set_title(f"{manifest['city'][i][:14]}", fontsize=7)
            if manifest["has_label"][i]:
                axes[2 * s + 1, j].imshow(table[labels[i]])
        axes[2 * s, 0].text(-0.1, 0.5, split, transform=axes[2 * s, 0].transAxes, rotation=90, ha="right",
                            va="center")
    fig.tight_layout()
    return fig


def class_legend(dpi: int = 110):
    fig, ax = plt.subplots(figsize=(9, 2.2), dpi=dpi)
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c.colour) for c in CLASSES]
    ax.legend(handles, [f"{c.id} {c.name[:40]}" for c in CLASSES], ncol=3, fontsize=7, loc="center")
    return fig


def loss_curves(histories: dict[str, str | Path], dpi: int = 110):
    """Pretraining loss per step, one line per run (``{label: history.csv}``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), dpi=dpi)
    for label, path in sorted(histories.items()):
        h = pd.read_csv(path)
        loss = h["loss"]
        # Losses of different methods live on different scales: show each relative to its first value too.
        axes[0].plot(h["step"], loss, label=label)
        first = loss.iloc[0] if abs(loss.iloc[0]) > 1e-12 else 1.0
        axes[1].plot(h["step"], loss / first, label=label)
    axes[0].set_title("loss")
    axes[1].set_title("loss / first logged loss")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def read_metrics(paths: list[str | Path]) -> pd.DataFrame:
    """Flatten a list of metrics JSON files into a table (nested dicts become dotted columns)."""
    return pd.json_normalize([json.loads(Path(p).read_text()) for p in paths])


def metric_vs_fraction(agg: pd.DataFrame, protocol: str, metric: str = "miou", dpi: int = 110):
    """Mean ± std over seeds of a test metric against the label fraction, one line per method."""
    df = agg[agg["protocol"] == protocol]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=dpi)
    for method, g in df.groupby("method", sort=False):
        g = g.sort_values("fraction")
        std = g[f"{metric}_std"].fillna(0.0)
        ax.errorbar(g["fraction"], 100 * g[f"{metric}_mean"], yerr=100 * std, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of labeled sub-tiles")
    ax.set_ylabel(f"test {metric.upper()} (%)")
    ax.set_title(protocol)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_class_iou_bars(agg: pd.DataFrame, protocol: str, fraction: float, dpi: int = 110):
    """Per-class test IoU (mean over seeds) of every method at one label fraction."""
    from tmf.data.minifrance import SCORED_IDS

    df = agg[(agg["protocol"] == protocol) & (agg["fraction"] == fraction)]
    ids = [i for i in SCORED_IDS if f"iou_{i}_mean" in df.columns and df[f"iou_{i}_mean"].notna().any()]
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=dpi)
    width = 0.8 / max(1, len(df))
    for k, (_, r) in enumerate(df.iterrows()):
        ax.bar(np.arange(len(ids)) + k * width, [100 * (r[f"iou_{i}_mean"] or 0) for i in ids], width,
               label=r["method"])
    ax.set_xticks(np.arange(len(ids)) + 0.4 - width / 2, [str(i) for i in ids])
    ax.set_xlabel("class id")
    ax.set_ylabel("test IoU (%)")
    ax.set_title(f"{protocol}, label fraction {fraction:g}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def confusion_figure(metrics_json: str | Path, dpi: int = 110):
    """Row-normalised confusion matrix (true × predicted, scored ids) of one evaluation run."""
    from tmf.data.minifrance import SCORED_IDS

    m = json.loads(Path(metrics_json).read_text())
    cm = np.asarray(m["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=dpi)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(SCORED_IDS)), SCORED_IDS, fontsize=7)
    ax.set_yticks(range(len(SCORED_IDS)), SCORED_IDS, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{m['protocol']} / {m['method']} / {m['fraction']:g} / seed {m['seed']}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
