"""MiniFrance facts, defined once (SPEC.md §1; seed 004 §2.3.1, Tables 2.4–2.6).

Everything that names a city, a split, a class id, a class colour or the UrbanAtlas hierarchy imports it from
here: rules, notebooks, tests and the synthetic generator alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS: tuple[str, ...] = ("labeled", "unlabeled", "test")


@dataclass(frozen=True)
class City:
    name: str  # folder name used by the public data
    split: str  # labeled | unlabeled | test
    tiles: int  # number of 10,000 px tiles in MiniFrance (Table 2.4)
    dept: str  # French département number used in tile file names
    x_km: int  # approximate Lambert-93 easting of the conurbation (km), for georeferencing synthetic tiles
    y_km: int  # approximate Lambert-93 northing (km)


CITIES: tuple[City, ...] = (
    City("Nice", "labeled", 170, "06", 1040, 6300),
    City("Nantes_Saint-Nazaire", "labeled", 226, "44", 350, 6690),
    City("LeMans", "unlabeled", 107, "72", 490, 6770),
    City("Brest", "unlabeled", 88, "29", 145, 6840),
    City("Lorient", "unlabeled", 68, "56", 220, 6760),
    City("Caen", "unlabeled", 126, "14", 455, 6905),
    City("Calais_Dunkerque", "unlabeled", 150, "62", 640, 7100),
    City("Saint-Brieuc", "unlabeled", 71, "22", 275, 6840),
    City("Marseille_Martigues", "test", 162, "13", 890, 6245),
    City("Rennes", "test", 196, "35", 350, 6790),
    City("Angers", "test", 123, "49", 430, 6720),
    City("Quimper", "test", 79, "29", 170, 6790),
    City("Vannes", "test", 73, "56", 270, 6745),
    City("Clermont-Ferrand", "test", 150, "63", 705, 6520),
    City("Lille_Arras_Lens_Douai_Henin", "test", 275, "59", 700, 7060),
    City("Cherbourg", "test", 57, "50", 365, 6965),
)
CITY_BY_NAME: dict[str, City] = {c.name: c for c in CITIES}
CITY_NAMES: tuple[str, ...] = tuple(c.name for c in CITIES)


def cities_in(split: str) -> tuple[str, ...]:
    """Names of the cities of one split, in the order of Table 2.4."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return tuple(c.name for c in CITIES if c.split == split)


TOTAL_TILES = sum(c.tiles for c in CITIES)  # 2,121


def city_rank(name: str) -> tuple[int, str]:
    """Sort key of a city: the order of Table 2.4, then any other city folder (not one of the 16) by name."""
    return (CITY_NAMES.index(name), "") if name in CITY_BY_NAME else (len(CITY_NAMES), name)


# ---- the public releases on disk (SPEC.md §1 and §7; TorchGeo's DFC2022 loader) ----
# <split>/<City>/BDORTHO/<stem>.tif, UrbanAtlas/<stem>_UA2012.tif, RGEALTI/<stem>_RGEALTI.tif (DFC2022)
IMAGE_DIR, LABEL_DIR, DEM_DIR = "BDORTHO", "UrbanAtlas", "RGEALTI"
LABEL_SUFFIX, DEM_SUFFIX = "_UA2012", "_RGEALTI"
# split folder name of a release -> split of Table 2.4 (DFC2022: labeled_train, unlabeled_train, val = the 8
# MiniFrance test cities without masks; its `test` partition holds three other areas without georeference)
SPLIT_FOLDERS: dict[str, str] = {
    "labeled": "labeled",
    "unlabeled": "unlabeled",
    "test": "test",
    "labeled_train": "labeled",
    "unlabeled_train": "unlabeled",
    "val": "test",
}
DFC2022_FOLDERS: tuple[str, ...] = ("labeled_train", "unlabeled_train", "val")
TILE_CRS = "EPSG:2154"  # Lambert-93
TILE_RES = 0.5  # m/px of BD ORTHO images and UrbanAtlas rasters
DEM_NODATA = -99999.0  # RGEALTI no-data value
# data.source values whose tiles come with an RGEALTI elevation model: DFC2022 (seed 004 §2.7) and the embedded
# synthetic data, which imitates it; the MiniFrance release has none
DEM_SOURCES = ("synthetic", "dfc2022")
# Checksums published for the release archives, checked whenever a `data.url` part has this file name.
PUBLISHED_CHECKSUMS: dict[str, str] = {
    "labeled_train.zip": "md5:2e87d6a218e466dd0566797d7298c7a9",
    "unlabeled_train.zip": "md5:1016d724bc494b8c50760ae56bb0585e",
    "val.zip": "md5:6ddd9c0f89d8e74b94ea352d4002073f",
}

# UrbanAtlas 2012 level-1 groups (the hierarchy used by the horospherical head's "smart" prototypes).
ARTIFICIAL, AGRICULTURAL, FOREST, WETLANDS, WATER = (
    "artificial surfaces",
    "agricultural areas",
    "forest and semi-natural areas",
    "wetlands",
    "water",
)
LEVEL1: tuple[str, ...] = (ARTIFICIAL, AGRICULTURAL, FOREST, WETLANDS, WATER)


@dataclass(frozen=True)
class LandUse:
    id: int
    name: str
    level1: str | None  # None for the ignored ids
    colour: str  # hex colour of the public tools
    share_minifrance: float  # % of pixels, Table 2.5
    share_tiny: float  # % of pixels, Table 2.6
    short: str = ""  # a few words for figure axes and table headers (the full name goes in their legend)

    @property
    def label(self) -> str:
        """The short name where there is one, else the name."""
        return self.short or self.name


CLASSES: tuple[LandUse, ...] = (
    LandUse(0, "no information", None, "#231F20", float("nan"), float("nan")),
    LandUse(1, "urban fabric", ARTIFICIAL, "#DB5F57", 9.6, 9.9),
    LandUse(2, "industrial, commercial, public, military, private and transport units", ARTIFICIAL, "#DB9757",
            6.4, 6.5, short="industrial, transport"),
    LandUse(3, "mine, dump and construction sites", ARTIFICIAL, "#DBD057", 0.7, 0.7, short="mines, dumps, sites"),
    LandUse(4, "artificial non-agricultural vegetated areas", ARTIFICIAL, "#ADDB57", 1.1, 1.2, short="artificial green"),
    LandUse(5, "arable land (annual crops)", AGRICULTURAL, "#75DB57", 29.5, 30.7, short="arable land"),
    LandUse(6, "permanent crops", AGRICULTURAL, "#7BC47B", 1.0, 1.3),
    LandUse(7, "pastures", AGRICULTURAL, "#58B158", 29.0, 27.3),
    LandUse(8, "complex and mixed cultivation patterns", AGRICULTURAL, "#D4F6D4", 0.0, 0.0, short="mixed cultivation"),
    LandUse(9, "orchards at the fringe of urban classes", AGRICULTURAL, "#B0E2B0", 0.0, 0.0, short="urban orchards"),
    LandUse(10, "forests", FOREST, "#008000", 15.9, 16.0),
    LandUse(11, "herbaceous vegetation associations", FOREST, "#58B0A7", 4.6, 4.5, short="herbaceous"),
    LandUse(12, "open spaces with little or no vegetation", FOREST, "#995D13", 0.4, 0.1, short="open spaces"),
    LandUse(13, "wetlands", WETLANDS, "#579BDB", 0.7, 0.7),
    LandUse(14, "water", WATER, "#0062FF", 1.0, 1.0),
    LandUse(15, "clouds and shadows", None, "#231F20", 0.1, 0.1, short="clouds, shadows"),
)
N_CLASSES = len(CLASSES)  # 16 label ids, 0..15
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
COLOURS: tuple[str, ...] = tuple(c.colour for c in CLASSES)
IGNORED_IDS: tuple[int, ...] = (0, 15)  # never scored
ABSENT_IDS: tuple[int, ...] = (8, 9)  # do not occur in MiniFrance
SCORED_IDS: tuple[int, ...] = tuple(c.id for c in CLASSES if c.id not in IGNORED_IDS)  # 14 classes
REPRESENTATIVENESS_IDS: tuple[int, ...] = tuple(i for i in SCORED_IDS if i not in ABSENT_IDS)  # 12 classes, §2.4.2
IGNORE_INDEX = 255  # what scored-label tensors use for pixels that are not scored


def colour_table() -> np.ndarray:
    """(16, 3) uint8 RGB table: ``colour_table()[label]`` paints a label raster."""
    return np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in COLOURS], dtype=np.uint8)


def scored_label_map() -> np.ndarray:
    """(256,) lookup from MiniFrance ids to 0..13 training targets; ignored ids map to ``IGNORE_INDEX``."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for k, cid in enumerate(SCORED_IDS):
        lut[cid] = k
    return lut


def tree_distance_matrix(ids: tuple[int, ...] = SCORED_IDS) -> np.ndarray:
    """Path length between classes in the two-level UrbanAtlas tree (root → level 1 → class).

    0 on the diagonal, 2 between classes of one level-1 group, 4 across groups. Used by the "smart"
    prototypes (Gromov–Wasserstein, seed 000 ch. 5) and the average hierarchical cost.
    """
    groups = [CLASSES[i].level1 for i in ids]
    n = len(ids)
    d = np.full((n, n), 4.0)
    for i in range(n):
        for j in range(n):
            if i == j:
                d[i, j] = 0.0
            elif groups[i] == groups[j]:
                d[i, j] = 2.0
    return d
