"""Self-supervised losses (SPEC.md §4), one module per family; each is a pure function of tensors."""

from .contrastive import alignment, barlow_twins, byol, moco_infonce, nt_xent, uniformity, wang_isola
from .dense import MATCHINGS, dense_contrastive, match_plans, match_weights
from .hydes import hydes
from .iot import COUPLINGS, iot_coupling, iot_loss, log_coupling
from .multimodal import mm_ssl, mm_supcon, multi_positive_nce
from .ot import ot_feature, ot_sample, sinkhorn_log
from .sliced import sphere_projections, ssw_ssl, ssw_uniformity, sw_ssl, sw_uniformity

__all__ = [
    "COUPLINGS",
    "MATCHINGS",
    "alignment",
    "barlow_twins",
    "byol",
    "dense_contrastive",
    "hydes",
    "iot_coupling",
    "iot_loss",
    "log_coupling",
    "mm_ssl",
    "mm_supcon",
    "match_plans",
    "match_weights",
    "moco_infonce",
    "multi_positive_nce",
    "nt_xent",
    "ot_feature",
    "ot_sample",
    "sinkhorn_log",
    "sphere_projections",
    "ssw_ssl",
    "ssw_uniformity",
    "sw_ssl",
    "sw_uniformity",
    "uniformity",
    "wang_isola",
]
