"""The modalities of the study (RGB and elevation) and which method and downstream subset uses which: the one
torch-free place the plan, the method registry and the evaluation read it from (docs/multimodal.md)."""

from __future__ import annotations

RGB, DEM = "rgb", "dem"
MODALITIES = (RGB, DEM)

#: pretraining methods on more than the RGB images (tmf.ssl.multimodal), with the modalities each learns from; every
#: other method of the registry is RGB-only
METHOD_MODALITIES: dict[str, tuple[str, ...]] = {
    "mm_ssl": (RGB, DEM),
    "mm_ssl_star": (RGB, DEM),
    "mm_ssl_rgb": (RGB,),
    "mm_ssl_dem": (DEM,),
}
#: downstream subsets (evaluate.multimodal.subsets) → modalities, in the order their features are concatenated
SUBSETS: dict[str, tuple[str, ...]] = {"rgb": (RGB,), "dem": (DEM,), "rgb_dem": (RGB, DEM)}


def method_modalities(method: str) -> tuple[str, ...]:
    """The modalities a pretraining method's encoders see (``("rgb",)`` for every RGB-only method); baselines
    (random init) start from every modality."""
    return METHOD_MODALITIES.get(method, (RGB,))


def is_multimodal(method: str) -> bool:
    """A method of the MM-SSL family (:data:`METHOD_MODALITIES`), whatever its modalities."""
    return method in METHOD_MODALITIES


def needs_dem(method: str) -> bool:
    """Whether a pretraining method reads the elevation arrays."""
    return DEM in method_modalities(method)


STAR_METHODS = ("mm_ssl_star",)  # no in-modality augmented views (Table 4.3's ⋆ rows)


def subset_label(subset: str) -> str:
    """``rgb_dem`` → ``RGB + DEM`` (Table 4.3's column names)."""
    return " + ".join(m.upper() for m in SUBSETS[subset])


def pretraining_label(method: str) -> str:
    """A row of Table 4.3: ``random init`` (Table 4.3's "None"), the pretraining modalities (``RGB + DEM ⋆`` without
    in-modality views), or ``RGB (<method>)`` for the RGB-only methods of the zoo."""
    if method == "random":
        return "random init"
    if method in METHOD_MODALITIES:
        return " + ".join(m.upper() for m in METHOD_MODALITIES[method]) + (" ⋆" if method in STAR_METHODS else "")
    return f"RGB ({method})"
