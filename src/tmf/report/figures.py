"""Figures shared by the report notebooks (matplotlib, Agg). Each function takes file paths of earlier stages
and returns a matplotlib Figure; notebooks only display them."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tmf.data.minifrance import CLASSES, COLOURS, REPRESENTATIVENESS_IDS, colour_table  # noqa: E402


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
    manifest = pd.read_csv(manifest_csv)
    images = np.load(Path(packed_dir) / "images.npy", mmap_mode="r")
    labels = np.load(Path(packed_dir) / "labels.npy", mmap_mode="r")
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
