"""The report's figures, one function each (named as its item in :mod:`tmf.report.items`): ``(ctx, **keys)`` →
a matplotlib Figure, which ``tmf report-items`` saves as a PNG at ``report.dpi``.

Classes are named and coloured wherever they appear (short names on axes, full names in a legend); layouts are
constrained so that labels do not overlap at the default resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import ScaledTranslation, blended_transform_factory  # noqa: E402

from tmf.data.minifrance import CLASSES, REPRESENTATIVENESS_IDS, SCORED_IDS, colour_table  # noqa: E402
from tmf.report.items import Context  # noqa: E402

PROTOCOL_TITLES = {"finetune": "fine-tuning", "linear": "linear probe"}


def class_legend(fig, ids, ncol: int = 3, **kwargs) -> None:
    """A legend of classes (colour and full name) under the figure."""
    handles = [Patch(facecolor=CLASSES[i].colour, edgecolor="0.3", label=CLASSES[i].name) for i in ids]
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=7, frameon=False, **kwargs)


def class_axis(ax, ids, axis: str = "x") -> None:
    """Class short names as the ticks of ``axis``, each above (or beside) a mark in its colour."""
    labels = [CLASSES[i].label for i in ids]
    fig = ax.figure
    if axis == "x":
        ax.set_xticks(range(len(ids)), labels, rotation=40, ha="right", rotation_mode="anchor", fontsize=7)
        ax.tick_params(axis="x", pad=9)
        trans = blended_transform_factory(ax.transData, ax.transAxes) + ScaledTranslation(0, -4 / 72,
                                                                                           fig.dpi_scale_trans)
        for k, i in enumerate(ids):
            ax.plot([k - 0.4, k + 0.4], [0, 0], transform=trans, color=CLASSES[i].colour, lw=5,
                    solid_capstyle="butt", clip_on=False)
    else:
        ax.set_yticks(range(len(ids)), labels, fontsize=7)
        ax.tick_params(axis="y", pad=9)
        trans = blended_transform_factory(ax.transAxes, ax.transData) + ScaledTranslation(-4 / 72, 0,
                                                                                           fig.dpi_scale_trans)
        for k, i in enumerate(ids):
            ax.plot([0, 0], [k - 0.4, k + 0.4], transform=trans, color=CLASSES[i].colour, lw=5,
                    solid_capstyle="butt", clip_on=False)


def fraction_axis(ax, fractions) -> None:
    """A log axis of label fractions ticked at the fractions run, in %."""
    values = sorted({100 * float(f) for f in fractions})
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g} %" for v in values])
    ax.minorticks_off()
    if len(values) == 1:
        ax.set_xlim(values[0] / 3, values[0] * 3)
    ax.set_xlabel("labeled sub-tiles used")


def protocol_title(protocol: str) -> str:
    return PROTOCOL_TITLES.get(protocol, protocol.replace("_", " "))


# ---- data
def class_share_bars(ctx: Context):
    """Our class shares next to Table 2.6, one pair of bars per class of the representativeness analysis."""
    from tmf.report.tables import class_share_frame

    df = class_share_frame(ctx.inputs["class_shares"])
    df = df[df["id"].isin(REPRESENTATIVENESS_IDS)]
    x = np.arange(len(df))
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    ax.bar(x - 0.2, df["ours"], 0.4, color=[CLASSES[i].colour for i in df["id"]], edgecolor="k", label="ours")
    ax.bar(x + 0.2, df["table_2_6"], 0.4, color="white", edgecolor="k", hatch="//",
           label="Table 2.6 (Castillo-Navarro 2022)")
    class_axis(ax, list(df["id"]))
    ax.set_ylabel("% of labelled pixels")
    ax.legend(fontsize=8)
    return fig


def subtile_mosaic(ctx: Context, per_split: int = 6, seed: int = 0):
    """A few sub-tiles of each split, each image above its label map in the class colours."""
    from tmf.data.packed import open_packed

    packed = open_packed(ctx.inputs["manifest"], Path(ctx.inputs["images"]).parent)
    manifest, images, labels = packed.manifest, packed.images, packed.labels
    rng = np.random.default_rng(seed)
    splits = ["labeled", "unlabeled", "test"]
    fig, axes = plt.subplots(2 * len(splits), per_split, figsize=(1.5 * per_split, 3.1 * len(splits) + 1.2),
                             layout="constrained")
    table = colour_table()
    present: set[int] = set()
    for s, split in enumerate(splits):
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        pick = np.sort(rng.choice(rows, size=min(per_split, len(rows)), replace=False)) if len(rows) else []
        for j in range(per_split):
            for k in (0, 1):
                axes[2 * s + k, j].set_axis_off()
            if j >= len(pick):
                continue
            i = pick[j]
            axes[2 * s, j].imshow(images[i])
            axes[2 * s, j].set_title(manifest["city"][i].split("_")[0][:14], fontsize=7)
            if manifest["has_label"][i]:
                axes[2 * s + 1, j].imshow(table[labels[i]], interpolation="nearest")
                present.update(int(v) for v in np.unique(labels[i]))
            else:
                axes[2 * s + 1, j].text(0.5, 0.5, "no label", ha="center", va="center", fontsize=7,
                                        transform=axes[2 * s + 1, j].transAxes)
        axes[2 * s, 0].text(-0.12, 0.0, f"{split} split", transform=axes[2 * s, 0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=9)
    class_legend(fig, sorted(present), ncol=2)
    return fig


# ---- pretraining
def loss_curves(ctx: Context):
    """Pretraining loss per step of every (method, seed), and relative to its first logged value (the methods'
    losses live on different scales)."""
    runs = ctx.inputs["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for label, files in sorted(runs.items()):
        h = pd.read_csv(files["history"])
        loss = h["loss"]
        axes[0].plot(h["step"], loss, label=label)
        first = loss.iloc[0] if len(loss) and abs(loss.iloc[0]) > 1e-12 else 1.0
        axes[1].plot(h["step"], loss / first, label=label)
    axes[0].set_title("loss", fontsize=10)
    axes[1].set_title("loss / first logged loss", fontsize=10)
    for ax in axes:
        ax.set_xlabel("step")
    if runs:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=7,
                   ncol=1 + len(runs) // 20)
    return fig


# ---- evaluation
def _aggregate(ctx: Context) -> pd.DataFrame:
    return pd.read_csv(ctx.inputs["aggregate"])


def _pixel(agg: pd.DataFrame) -> pd.DataFrame:
    """The pixel-level runs that ran (a skipped method, e.g. the oracle without its labels, has no scores)."""
    from tmf.report.scores import _pixel_protocols

    return agg[agg["protocol"].isin(_pixel_protocols(agg)) & (agg["status"] == "ok")]


def _test_set_words(agg: pd.DataFrame) -> str:
    from tmf.report.scores import test_set_label

    return ", ".join(test_set_label(t) for t in dict.fromkeys(agg["test_set"])) or "the test set"


def scores_vs_fraction(ctx: Context):
    """mIoU and OA on the test set (mean ± std over seeds) against the label fraction, one row of panels per
    protocol, one line per method."""
    agg = _pixel(_aggregate(ctx))
    protocols = list(dict.fromkeys(agg["protocol"]))
    n = max(1, len(protocols))
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.2 * n + 0.6), squeeze=False, layout="constrained")
    for row, protocol in zip(axes, protocols, strict=False):
        df = agg[agg["protocol"] == protocol]
        for ax, metric, name in zip(row, ("miou", "oa"), ("mIoU", "OA"), strict=True):
            for method, g in df.groupby("method", sort=False):
                g = g.sort_values("fraction")
                ax.errorbar(100 * g["fraction"], 100 * g[f"{metric}_mean"], yerr=100 * g[f"{metric}_std"].fillna(0),
                            marker="o", capsize=3, label=method)
            fraction_axis(ax, df["fraction"])
            ax.set_ylabel(f"test {name} (%)")
            ax.set_title(f"{protocol_title(protocol)}: {name} on {_test_set_words(df)}", fontsize=10)
        row[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if not protocols:
        for ax in axes[0]:
            ax.set_axis_off()
    return fig


def per_class_iou_bars(ctx: Context):
    """Test IoU of every scored class (mean over seeds) of each method at the largest label fraction, one panel
    per protocol."""
    agg = _pixel(_aggregate(ctx))
    protocols = list(dict.fromkeys(agg["protocol"]))
    ids = [i for i in SCORED_IDS if f"iou_{i}_mean" in agg.columns and agg[f"iou_{i}_mean"].notna().any()]
    n = max(1, len(protocols))
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.4 * n + 1), squeeze=False, layout="constrained")
    for ax, protocol in zip(axes[:, 0], protocols, strict=False):
        df = agg[agg["protocol"] == protocol]
        df = df[df["fraction"] == df["fraction"].max()]
        width = 0.8 / max(1, len(df))
        for k, (_, r) in enumerate(df.iterrows()):
            heights = [100 * np.nan_to_num(r[f"iou_{i}_mean"]) for i in ids]
            ax.bar(np.arange(len(ids)) - 0.4 + (k + 0.5) * width, heights, width, label=r["method"])
        class_axis(ax, ids)
        ax.set_ylabel("test IoU (%)")
        ax.set_title(f"{protocol_title(protocol)}, {100 * df['fraction'].max():g} % of the labels", fontsize=10)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if not protocols:
        axes[0, 0].set_axis_off()
    return fig


def confusion(ctx: Context, protocol: str, method: str, fraction: str, seed: str):
    """Row-normalised confusion matrix (true class × predicted class, scored classes) of one evaluation run."""
    m = json.loads(Path(ctx.inputs["metrics"]).read_text())
    title = f"{protocol_title(protocol)}, {method}, {100 * float(fraction):g} % of the labels, seed {seed}"
    if m.get("status", "ok") != "ok":  # a method without the labels it needs (the oracle on public data)
        fig, ax = plt.subplots(figsize=(6.6, 1.2), layout="constrained")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        ax.text(0.5, 0.5, f"skipped: {m.get('reason', '')}", ha="center", va="center", wrap=True, fontsize=8)
        return fig
    cm = np.asarray(m["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ids = list(SCORED_IDS)[:len(norm)]
    fig, ax = plt.subplots(figsize=(6.6, 5.8), layout="constrained")
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    class_axis(ax, ids, "x")
    class_axis(ax, ids, "y")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}, test set {m['test_set']}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class's pixels")
    return fig
