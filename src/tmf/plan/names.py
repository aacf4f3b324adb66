"""The names jobs are made of: protocols, baselines and appearance encoders, and which is which.

Evaluated methods are the self-supervised encoders of ``pretrain.methods`` plus ``evaluate.baselines``:

- SSL encoders, ``random`` and ``imagenet`` are encoders: every protocol, at ``evaluate.fractions`` for the
  fine-tuning protocols and ``evaluate.probe_fractions`` for the frozen probes;
- ``supervised``, ``oracle``, ``berundanet_l1``, ``berundanet_kmeans`` are networks trained from scratch
  (:data:`TRAINED_BASELINES`): the fine-tuning protocols only, at ``evaluate.baseline_fractions`` (seed 004
  Table 3.1 uses all labels);
- the multi-modal protocols (:data:`MODAL_PROTOCOLS`) run one job per downstream subset of modalities
  (``<protocol>_<subset>``), for the methods pretrained on those modalities and ``random`` (:func:`runs_subset`);
  a method pretrained on elevation alone (``mm_ssl_dem``) runs no RGB protocol.

Appearance encoders are ``random-<arch>``, ``imagenet-<arch>`` (arch: a key of ``appearance.weights``) or
``ssl-<method>`` (a method of ``pretrain.methods``).
"""

from __future__ import annotations

from tmf.data.minifrance import DEM_SOURCES
from tmf.modalities import SUBSETS, method_modalities

PROTOCOLS = ("linear", "finetune", "finetune_horospherical", "finetune_euclidean", "knn", "logreg", "finetune_mm",
             "supcon_mm")
FINETUNE_PROTOCOLS = ("finetune", "finetune_horospherical", "finetune_euclidean")
MODAL_PROTOCOLS = ("finetune_mm", "supcon_mm")  # one job per evaluate.multimodal.subsets (tmf.evaluate.multimodal)
PROBE_PROTOCOLS = ("linear", "knn", "logreg")
HEAD_PROTOCOLS = ("finetune_horospherical", "finetune_euclidean")  # one job per evaluate.hyperbolic.dims
ENCODER_BASELINES = ("random", "imagenet")  # encoders: every protocol
TRAINED_BASELINES = ("supervised", "oracle", "berundanet_l1", "berundanet_kmeans")  # from scratch, fine-tuning only
BASELINES = ENCODER_BASELINES + TRAINED_BASELINES
SEMISUPERVISED_BASELINES = ("berundanet_l1", "berundanet_kmeans")  # also read evaluate.semisup

SSL_ENCODER = "ssl-"  # appearance encoder ssl-<method>: the encoder pretrained by <method>
FIXED_ENCODER_KINDS = ("random", "imagenet")  # appearance encoders <kind>-<arch>


def is_ssl(method: str) -> bool:
    """A self-supervised method (its encoder comes from the pretraining stage), not a baseline."""
    return method not in BASELINES


def head_protocol(protocol: str, dim: int) -> str:
    """``finetune_horospherical`` at d = 3 → ``finetune_horospherical_d3`` (the job's protocol folder)."""
    return f"{protocol}_d{dim}"


def split_protocol(name: str) -> tuple[str, int | None]:
    """``finetune_euclidean_d128`` → ``("finetune_euclidean", 128)``; other protocols → ``(name, None)``."""
    for base in HEAD_PROTOCOLS:
        if name.startswith(base + "_d") and name[len(base) + 2:].isdigit():
            return base, int(name[len(base) + 2:])
    return name, None


def modal_protocol(protocol: str, subset: str) -> str:
    """``finetune_mm`` on ``rgb_dem`` → ``finetune_mm_rgb_dem`` (the job's protocol folder)."""
    return f"{protocol}_{subset}"


def split_modal(name: str) -> tuple[str, str | None]:
    """``supcon_mm_dem`` → ``("supcon_mm", "dem")``; other protocols → ``(name, None)``."""
    for base in MODAL_PROTOCOLS:
        if name.startswith(base + "_") and name[len(base) + 1:] in SUBSETS:
            return base, name[len(base) + 1:]
    return name, None


def runs_subset(method: str, subset: str) -> bool:
    """Whether ``method`` is evaluated on the downstream ``subset``: its modalities are among those the method was
    pretrained on (seed 000 Table 4.3 fills no cell below the diagonal); ``random`` on every subset; the networks
    trained from scratch on none."""
    if method in TRAINED_BASELINES or method == "imagenet":
        return False
    return method == "random" or set(SUBSETS[subset]) <= set(method_modalities(method))


def has_elevation(params: dict) -> bool:
    """Whether the configuration's data come with elevation: ``data.dem: auto`` and a source that ships it
    (:data:`tmf.data.minifrance.DEM_SOURCES`)."""
    return params["data"]["dem"] == "auto" and params["data"]["source"] in DEM_SOURCES


def fraction_tag(fraction: float) -> str:
    """``0.01 → '0.01'``, ``1.0 → '1'``: the ``frac<f>`` folder name (shortest exact repr)."""
    return format(float(fraction), "g")


def ssl_encoder_method(encoder: str) -> str | None:
    """``ssl-simclr`` → ``simclr``; ``None`` for an encoder that does not come from the pretraining stage."""
    return encoder.removeprefix(SSL_ENCODER) if encoder.startswith(SSL_ENCODER) else None
