"""Test sets: which sub-tiles an evaluation job scores and which may supervise it (``evaluate.test_set``).

The thesis scores the test cities (seed 004 §2.3, SPEC.md §5), but the public MiniFrance and DFC2022 releases
withhold their labels (SPEC.md §7), so a study on public data draws its test set from the labeled cities:

- ``test_cities``: train on the labeled split, score the test split's labeled sub-tiles (the thesis' protocol);
- ``labeled_holdout``: whole tiles of the labeled cities held out in spatial blocks (:func:`holdout_tiles`); no
  sub-tile of a held-out tile enters any label pool, at any label fraction (the pools are built without them,
  before the fraction is drawn);
- ``cross_city``: one fold per labeled city: train on the other labeled cities, score that one (with Nice and
  Nantes_Saint-Nazaire, both ways); the job pools the folds' confusion matrices, so every labeled pixel is scored
  once, by a model that never saw its city's labels;
- ``auto``: ``test_cities`` when the test split has labeled sub-tiles, else ``labeled_holdout`` (logged once).

Images are not labels: pretraining reads none, so held-out tiles are pretrained on when their split is in
``pretrain.splits`` (the default, labeled and unlabeled, holds them; the test cities' images likewise when ``test``
is added), and the semi-supervised terms draw from the unlabeled split only, which holds no held-out tile.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tmf.config import ParamsError
from tmf.data.minifrance import city_rank
from tmf.evaluate.data import city_stream, label_pool, scoreable, scoring_pool
from tmf.plan.names import AUTO_TEST_SET as AUTO
from tmf.plan.names import TEST_SETS

log = logging.getLogger(__name__)
# BD ORTHO tile names: <dept>-<year>-<x_km>-<y_km>-LA93-0M50-E080, the upper-left corner on the Lambert-93 km grid
_BDORTHO_NAME = re.compile(r"^[0-9A-Za-z]{2,3}-\d{4}-(\d{3,4})-(\d{3,4})-LA93")


@dataclass(frozen=True)
class Fold:
    """One training/scoring split of a job: ``train`` the label pool (before the label fraction), ``test`` the
    scored rows (manifest row numbers, sorted)."""

    name: str
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class JobTestSet:
    """What one job scores: the resolved test set, how it was asked for, its folds (one, or one per labeled city
    for cross_city) and, for labeled_holdout, the held-out tiles and ``evaluate.holdout``."""

    name: str  # one of TEST_SETS
    requested: str  # evaluate.test_set as given (auto or one of TEST_SETS)
    folds: tuple[Fold, ...]
    held_out: tuple[str, ...] = ()  # "<city>/<tile>" of the held-out tiles (labeled_holdout)
    why: str = ""  # how auto chose
    holdout: dict[str, Any] = field(default_factory=dict)  # evaluate.holdout when it was used

    def info(self, frame: pd.DataFrame) -> dict[str, Any]:
        """What metrics.json records of the test set (``test_set_info``)."""
        cities = frame["city"].to_numpy()
        return {
            "requested": self.requested, "why": self.why,
            "scored_cities": sorted({c for f in self.folds for c in cities[f.test]}, key=city_rank),
            "folds": [{"name": f.name, "n_pool": int(len(f.train)), "n_test": int(len(f.test)),
                       "train_cities": sorted(set(cities[f.train]), key=city_rank)} for f in self.folds],
            **({"held_out_tiles": list(self.held_out), "holdout": self.holdout} if self.name == "labeled_holdout"
               else {}),
        }


def has_test_labels(frame: pd.DataFrame) -> bool:
    """Whether the test split has a labeled sub-tile with scored pixels (what ``auto`` decides on)."""
    return bool(((frame["split"].to_numpy() == "test") & scoreable(frame)).any())


def resolve(frame: pd.DataFrame, requested: str) -> tuple[str, str]:
    """``(test set, why)``: ``requested`` itself, or what ``auto`` picks for this manifest."""
    if requested in TEST_SETS:
        return requested, ""
    if requested != AUTO:
        raise ParamsError(f"evaluate.test_set: unknown test set {requested!r}; expected {AUTO} or one of "
                          f"{list(TEST_SETS)}")
    if has_test_labels(frame):
        return "test_cities", "the test cities have labels"
    return "labeled_holdout", ("the test cities have no labels (the public MiniFrance and DFC2022 releases "
                               "withhold them)")


def tile_block(tile: str, block_km: float) -> str:
    """The spatial block of a tile: ``x<i>_y<j>`` of its BD ORTHO name's km coordinates on a ``block_km`` grid,
    or ``tile:<name>`` (a block of its own) for a name without them."""
    m = _BDORTHO_NAME.match(tile)
    if not m:
        return f"tile:{tile}"
    x, y = (int(v) for v in m.groups())
    return f"x{int(x // block_km)}_y{int(y // block_km)}"


def holdout_tiles(frame: pd.DataFrame, holdout: dict[str, Any]) -> list[tuple[str, str]]:
    """The held-out ``(city, tile)`` pairs of the labeled split (``evaluate.holdout``: fraction, block_km, seed).

    Per labeled city, over its tiles with a scoreable sub-tile: tiles are grouped into blocks (:func:`tile_block`;
    tile by tile when they all fall in one block), the blocks are put in a random order seeded by
    (``seed``, city name), and whole blocks are held out in that order until they hold at least ``fraction`` of
    the city's scoreable sub-tiles, always at least one block and never all. A city with a single tile keeps it
    for training (with a warning). Our rule (the sources have no held-out set): blocks keep held-out sub-tiles
    away from training ones, so that the score is not inflated by neighbouring, near-identical sub-tiles.
    """
    fraction, block_km, seed = float(holdout["fraction"]), float(holdout["block_km"]), int(holdout["seed"])
    ok = (frame["split"].to_numpy() == "labeled") & scoreable(frame)
    sub = frame.loc[ok, ["city", "tile"]]
    held: list[tuple[str, str]] = []
    for city in sorted(set(sub["city"]), key=city_rank):
        per_tile = sub.loc[sub["city"] == city, "tile"].value_counts().sort_index()
        tiles = list(per_tile.index)
        if len(tiles) < 2:
            log.warning("evaluate.holdout: %s has a single labeled tile; none of it is held out", city)
            continue
        blocks = {t: tile_block(t, block_km) for t in tiles}
        if len(set(blocks.values())) < 2:  # all in one block: hold out whole tiles instead
            blocks = {t: f"tile:{t}" for t in tiles}
        keys = sorted(set(blocks.values()))
        order = [keys[i] for i in city_stream("holdout", city, seed).permutation(len(keys))]
        target, n_held, taken = fraction * int(per_tile.sum()), 0, []
        for key in order[:-1]:  # never every block
            taken.append(key)
            n_held += int(sum(per_tile[t] for t in tiles if blocks[t] == key))
            if n_held >= target:
                break
        held += [(city, t) for t in tiles if blocks[t] in taken]
    return held


def build(frame: pd.DataFrame, cfg: dict[str, Any], method: str) -> JobTestSet:
    """The test set of one job: its folds (label pool and scored rows) for ``method`` on this manifest.

    ``cfg`` is the ``evaluate`` section (``test_set``, ``holdout``, ``max_test_per_city``). Raises
    :class:`tmf.evaluate.data.MissingLabels` when ``method`` needs labels the data does not have, and a
    :class:`ParamsError` naming ``evaluate.test_set`` when the chosen test set has nothing to score.
    """
    requested = cfg["test_set"]
    name, why = resolve(frame, requested)
    pool = "oracle" if method == "oracle" else "labeled"
    cap = int(cfg["max_test_per_city"])
    labeled = (frame["split"].to_numpy() == "labeled") & scoreable(frame)
    cities = frame["city"].to_numpy()
    if name == "test_cities":
        if not has_test_labels(frame):
            raise ParamsError("evaluate.test_set = test_cities, but no test city has a labeled sub-tile with scored "
                              "pixels (the public MiniFrance and DFC2022 releases withhold their labels): use auto "
                              "or labeled_holdout")
        fold = Fold("test cities", label_pool(frame, pool), scoring_pool(frame, cap))
        return JobTestSet(name, requested, (fold,), why=why)
    if name == "labeled_holdout":
        held = holdout_tiles(frame, cfg["holdout"])
        keys = set(held)
        in_held = np.fromiter(((c, t) in keys for c, t in zip(cities, frame["tile"], strict=True)), bool,
                              len(frame))
        if not (in_held & labeled).any():
            raise ParamsError("evaluate.test_set = labeled_holdout: no tile can be held out (every labeled city "
                              "has a single tile with labels); use test_cities or give more labeled tiles")
        # every sub-tile of a held-out tile, in any split, is kept out of the pool
        fold = Fold("held-out tiles of the labeled cities", label_pool(frame, pool, exclude=in_held),
                    scoring_pool(frame, cap, np.flatnonzero(in_held & labeled)))
        return JobTestSet(name, requested, (fold,), tuple(f"{c}/{t}" for c, t in held), why, dict(cfg["holdout"]))
    scored = sorted(set(cities[labeled]), key=city_rank)
    if len(scored) < 2:
        raise ParamsError(f"evaluate.test_set = cross_city needs two labeled cities, the data has {scored}")
    folds = []
    for city in scored:
        others = ", ".join(c for c in scored if c != city)
        folds.append(Fold(f"{others} → {city}", label_pool(frame, pool, exclude=cities == city),
                          scoring_pool(frame, cap, np.flatnonzero(labeled & (cities == city)))))
    return JobTestSet(name, requested, tuple(folds), why=why)


def describe(ts: JobTestSet, frame: pd.DataFrame) -> str:
    """One log line: the test set, why (for auto), and what it scores."""
    cities = frame["city"].to_numpy()
    scored = sorted({c for f in ts.folds for c in cities[f.test]}, key=city_rank)
    n = sum(len(f.test) for f in ts.folds)
    head = f"test set {ts.name}" + (f" (evaluate.test_set = auto: {ts.why})" if ts.requested == AUTO else "")
    if ts.name == "labeled_holdout":
        h = ts.holdout
        return (f"{head}: {len(ts.held_out)} held-out tile(s) of {scored} (blocks of {h['block_km']:g} km, "
                f"fraction {h['fraction']:g}, seed {h['seed']}), {n} scored sub-tiles")
    if ts.name == "cross_city":
        return f"{head}: {len(ts.folds)} folds ({'; '.join(f.name for f in ts.folds)}), {n} scored sub-tiles"
    return f"{head}: {n} scored sub-tiles of {scored}"
