"""The evaluation job's figure: ``predictions.png`` (test sub-tiles: image | ground truth | prediction, in the
MiniFrance class colours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tmf.io import atomic_path


def colourise(labels: np.ndarray) -> np.ndarray:
    """MiniFrance ids (H, W) → RGB uint8 (H, W, 3) with ``colour_table()``; ids > 15 painted black."""
    from tmf.data.minifrance import colour_table

    table = np.zeros((256, 3), dtype=np.uint8)
    table[:16] = colour_table()
    return table[np.asarray(labels, dtype=np.uint8)]


def predictions_figure(data, examples: dict[int, np.ndarray], path: str | Path, title: str = "",
                       dpi: int = 100) -> None:
    """Rows of test sub-tiles: image | ground truth | prediction (class colours; ignored ids dark grey), the
    classes shown named in a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from tmf.data.minifrance import CLASSES

    rows = sorted(examples)
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n + 0.8), squeeze=False, layout="constrained")
    shown: set[int] = set()
    for ax, head in zip(axes[0], ("image", "ground truth", "prediction"), strict=True):
        ax.set_title(head, fontsize=9)
    for i, r in enumerate(rows):
        city = data.manifest["city"].iloc[r]
        shown.update(int(v) for v in np.unique(np.concatenate([np.ravel(data.labels[r]), np.ravel(examples[r])])))
        panels = (np.asarray(data.images[r]), colourise(np.asarray(data.labels[r])), colourise(examples[r]))
        for j, img in enumerate(panels):
            axes[i, j].imshow(img, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(city, fontsize=8)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    handles = [Patch(facecolor=CLASSES[i].colour, edgecolor="0.3", label=CLASSES[i].name)
               for i in sorted(shown) if i < len(CLASSES)]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
