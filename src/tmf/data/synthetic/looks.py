"""Where the synthetic cities differ: their region (``REGIONS``), class priors and regional look (``LOOKS``).

Design in docs/synthetic.md: cities of one region look alike and regions differ, as the appearance analysis of
seed 004 §2.4–2.6 found for the real conurbations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmf.data.minifrance import N_CLASSES

REGIONS: dict[str, str] = {
    "Nice": "mediterranean",
    "Marseille_Martigues": "mediterranean",
    "Brest": "brittany",
    "Lorient": "brittany",
    "Saint-Brieuc": "brittany",
    "Quimper": "brittany",
    "Vannes": "brittany",
    "Rennes": "brittany",
    "Nantes_Saint-Nazaire": "loire",
    "Angers": "loire",
    "LeMans": "loire",
    "Caen": "normandy",
    "Cherbourg": "normandy",
    "Calais_Dunkerque": "north",
    "Lille_Arras_Lens_Douai_Henin": "north",
    "Clermont-Ferrand": "massif",
}

# Class priors (% of the labeled pixels, ids 1..14 without the absent 8 and 9) per region. Weighted by the
# tile counts of Table 2.4 they give roughly the shares of Table 2.6 (checked in tests/test_synthetic.py).
#                    1     2     3    4     5     6    7     10    11    12   13   14
_PRIOR_IDS = (1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14)
_REGION_PRIORS: dict[str, tuple[float, ...]] = {
    "mediterranean": (17.0, 10.0, 1.0, 1.8, 6.0, 4.0, 6.0, 33.0, 15.0, 0.5, 0.7, 2.5),
    "brittany": (8.0, 5.0, 0.3, 0.7, 32.0, 0.2, 38.0, 13.0, 2.5, 0.05, 0.6, 0.6),
    "loire": (9.0, 7.0, 0.5, 0.9, 36.0, 1.5, 28.0, 13.0, 2.0, 0.05, 1.0, 1.2),
    "normandy": (7.0, 5.0, 0.4, 0.7, 28.0, 0.3, 44.0, 12.0, 2.5, 0.05, 0.7, 0.5),
    "north": (13.0, 9.0, 0.7, 1.0, 44.0, 0.1, 16.0, 10.0, 2.0, 0.05, 0.5, 0.6),
    "massif": (8.0, 6.0, 0.5, 0.7, 20.0, 1.0, 33.0, 24.0, 6.0, 0.2, 0.1, 0.2),
}
# Cities whose mix differs from their region's (seed 004 §2.4.2: Cherbourg holds 6 classes, ~70 % pastures).
_CITY_PRIORS: dict[str, tuple[float, ...]] = {
    "Cherbourg": (6.0, 4.0, 0.0, 0.0, 8.0, 0.0, 70.0, 9.0, 0.0, 0.0, 0.0, 3.0),
}


def region_prior(city: str) -> np.ndarray:
    """(16,) class probabilities (sum 1) of one city's prior: its region's, or its own where it has one."""
    if city not in REGIONS:
        raise ValueError(f"unknown city {city!r}")
    raw = _CITY_PRIORS.get(city, _REGION_PRIORS[REGIONS[city]])
    p = np.zeros(N_CLASSES)
    p[list(_PRIOR_IDS)] = raw
    return p / p.sum()


# ---------------------------------------------------------------------------------------------------------
# Regional appearance


@dataclass(frozen=True)
class Look:
    veg: tuple[float, float, float]  # grass / crops
    tree: tuple[float, float, float]  # canopy
    soil: tuple[float, float, float]  # bare soil, ploughed fields
    ripe: tuple[float, float, float]  # ripe cereals
    roofs: tuple[tuple[float, float, float], ...]  # roof palette of urban fabric
    water: tuple[float, float, float]
    brightness: float  # added after the contrast stretch
    contrast: float
    cast: tuple[float, float, float]  # per-channel gain (acquisition colour balance)
    haze: float  # mix towards a grey veil
    field_scale: float  # parcel size multiplier
    hedges: float  # share of field borders lined with hedges (bocage)
    canopy_gap: float  # share of bare ground between tree crowns


LOOKS: dict[str, Look] = {
    "mediterranean": Look(
        veg=(0.50, 0.52, 0.33), tree=(0.27, 0.32, 0.18), soil=(0.80, 0.70, 0.55), ripe=(0.88, 0.80, 0.58),
        roofs=((0.80, 0.44, 0.30), (0.84, 0.52, 0.36), (0.72, 0.38, 0.28), (0.88, 0.84, 0.76)),
        water=(0.08, 0.30, 0.48), brightness=0.07, contrast=1.10, cast=(1.06, 1.00, 0.90), haze=0.0,
        field_scale=0.75, hedges=0.0, canopy_gap=0.35),
    "brittany": Look(
        veg=(0.28, 0.44, 0.24), tree=(0.10, 0.20, 0.11), soil=(0.42, 0.34, 0.27), ripe=(0.70, 0.64, 0.40),
        roofs=((0.28, 0.30, 0.35), (0.33, 0.35, 0.40), (0.24, 0.26, 0.30), (0.74, 0.74, 0.72)),
        water=(0.10, 0.24, 0.27), brightness=-0.04, contrast=1.00, cast=(0.94, 1.00, 1.06), haze=0.0,
        field_scale=0.65, hedges=0.9, canopy_gap=0.05),
    "loire": Look(
        veg=(0.40, 0.50, 0.31), tree=(0.18, 0.28, 0.16), soil=(0.64, 0.57, 0.46), ripe=(0.80, 0.73, 0.50),
        roofs=((0.32, 0.34, 0.39), (0.82, 0.80, 0.74), (0.38, 0.38, 0.42), (0.66, 0.46, 0.36)),
        water=(0.30, 0.38, 0.38), brightness=0.02, contrast=0.95, cast=(1.00, 1.00, 1.00), haze=0.04,
        field_scale=1.0, hedges=0.25, canopy_gap=0.1),
    "normandy": Look(
        veg=(0.38, 0.57, 0.26), tree=(0.16, 0.31, 0.13), soil=(0.60, 0.50, 0.36), ripe=(0.80, 0.74, 0.44),
        roofs=((0.62, 0.40, 0.32), (0.56, 0.36, 0.30), (0.76, 0.73, 0.64), (0.50, 0.47, 0.45)),
        water=(0.17, 0.30, 0.36), brightness=0.02, contrast=1.05, cast=(0.95, 1.07, 0.88), haze=0.0,
        field_scale=0.85, hedges=0.7, canopy_gap=0.05),
    "north": Look(
        veg=(0.42, 0.47, 0.36), tree=(0.24, 0.30, 0.22), soil=(0.56, 0.51, 0.45), ripe=(0.74, 0.70, 0.55),
        roofs=((0.56, 0.30, 0.25), (0.48, 0.28, 0.24), (0.40, 0.38, 0.38), (0.62, 0.36, 0.30)),
        water=(0.28, 0.33, 0.36), brightness=0.0, contrast=0.80, cast=(1.00, 1.00, 1.02), haze=0.18,
        field_scale=1.5, hedges=0.0, canopy_gap=0.1),
    "massif": Look(
        veg=(0.26, 0.40, 0.32), tree=(0.12, 0.22, 0.18), soil=(0.35, 0.30, 0.29), ripe=(0.62, 0.58, 0.44),
        roofs=((0.54, 0.34, 0.28), (0.34, 0.32, 0.33), (0.44, 0.40, 0.40), (0.60, 0.58, 0.56)),
        water=(0.08, 0.20, 0.30), brightness=-0.05, contrast=1.12, cast=(0.92, 0.98, 1.10), haze=0.0,
        field_scale=1.1, hedges=0.2, canopy_gap=0.15),
}
HAZE_COLOUR = np.array([0.72, 0.74, 0.78], dtype=np.float32)
