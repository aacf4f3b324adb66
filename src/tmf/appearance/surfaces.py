"""Step 3 of the appearance analysis: each city's "appearance map" (seed 004 §2.4.1, "Step 3"; Fig. 2.12).

A one-class SVM (Schölkopf et al. 2001, the thesis' [154]) separates a city's 2-D t-SNE points from the origin
in the kernel's feature space; its decision function f(y) = Σ_i α_i k(x_i, y) − ρ is ≥ 0 on the estimated
support of the city's points. The surface is {y : f(y) ≥ 0} rasterised on a regular grid of cell centres over
the bounding box of the whole embedding (SPEC.md §3.3).

Points are first mapped to the unit square of that bounding box, so the RBF gamma means the same thing
whatever the arbitrary scale of the t-SNE coordinates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """A ``resolution × resolution`` grid over ``bounds = (xmin, xmax, ymin, ymax)``; cell ``[i, j]`` is row i
    (y, from ymin up) and column j (x, from xmin right)."""

    bounds: tuple[float, float, float, float]
    resolution: int

    def centres(self) -> np.ndarray:
        """(R*R, 2) cell centres in embedding coordinates, row-major over ``[i, j]``."""
        xmin, xmax, ymin, ymax = self.bounds
        r = self.resolution
        xs = xmin + (np.arange(r) + 0.5) * (xmax - xmin) / r
        ys = ymin + (np.arange(r) + 0.5) * (ymax - ymin) / r
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        return np.column_stack([gx.ravel(), gy.ravel()])

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        xmin, xmax, ymin, ymax = self.bounds
        p = np.asarray(points, dtype=np.float64)
        return np.column_stack([(p[:, 0] - xmin) / (xmax - xmin), (p[:, 1] - ymin) / (ymax - ymin)])

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """For ``imshow(grid, origin="lower", extent=...)``."""
        return self.bounds


def embedding_grid(embedding: np.ndarray, resolution: int = 200, margin: float = 0.05) -> Grid:
    """The grid over the embedding's bounding box, widened by ``margin`` × its extent on each side."""
    e = np.asarray(embedding, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != 2 or len(e) == 0:
        raise ValueError(f"embedding: expected a non-empty (N, 2) array, got shape {e.shape}")
    if resolution < 2:
        raise ValueError(f"grid_resolution must be ≥ 2, got {resolution}")
    lo, hi = e.min(axis=0), e.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - margin * span, hi + margin * span
    return Grid((float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])), int(resolution))


def fit_surface(points: np.ndarray, grid: Grid, kernel: str = "rbf", nu: float = 0.1,
                gamma: float | str = 200.0) -> np.ndarray:
    """Bool ``(R, R)`` grid: where the one-class SVM fitted on ``points`` (embedding coordinates) has
    decision ≥ 0."""
    from sklearn.svm import OneClassSVM

    svm = OneClassSVM(kernel=kernel, nu=nu, gamma=gamma)
    svm.fit(grid.to_unit(points))
    decision = svm.decision_function(grid.to_unit(grid.centres()))
    return (decision >= 0).reshape(grid.resolution, grid.resolution)


def appearance_surfaces(
    embedding: np.ndarray,
    cities: np.ndarray | list[str],
    grid_resolution: int = 200,
    kernel: str = "rbf",
    nu: float = 0.1,
    gamma: float | str = 200.0,
    min_points: int = 10,
    grid: Grid | None = None,
    margin: float = 0.05,
) -> tuple[dict[str, np.ndarray], Grid, dict[str, str]]:
    """One appearance map per city (seed 004 §2.4.1 step 3, Fig. 2.12).

    Returns ``(surfaces, grid, skipped)``: ``surfaces[city]`` is a bool ``(R, R)`` grid (decision ≥ 0);
    a city with fewer than ``min_points`` sub-tiles gets no surface, a logged warning and an entry
    ``skipped[city] = reason``; the other cities are computed as usual.
    """
    e = np.asarray(embedding)
    cities = np.asarray(cities)
    if len(cities) != len(e):
        raise ValueError(f"cities ({len(cities)}) and embedding ({len(e)}) differ in length")
    grid = grid or embedding_grid(e, grid_resolution, margin)
    surfaces: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for city in dict.fromkeys(cities.tolist()):  # first-appearance order = manifest order
        pts = e[cities == city]
        if len(pts) < min_points:
            reason = (f"{len(pts)} sub-tile(s), fewer than appearance.min_points = {min_points}: "
                      f"no one-class SVM, no surface")
            log.warning("appearance: city %s has %s", city, reason)
            skipped[city] = reason
            continue
        surfaces[city] = fit_surface(pts, grid, kernel, nu, gamma)
    return surfaces, grid, skipped
