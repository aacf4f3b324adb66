"""The names jobs are made of: protocols, baselines and appearance encoders, and which is which.

Evaluated methods are the self-supervised encoders of ``pretrain.methods`` plus ``evaluate.baselines``
(which protocol runs which method: :func:`runs`):

- SSL encoders, ``random`` and ``imagenet`` are encoders: every protocol but ``segnet``, at ``evaluate.fractions``
  for the fine-tuning protocols and ``evaluate.probe_fractions`` for the frozen probes; ``finetune_fixmatch``
  fine-tunes them with FixMatch's unlabeled term (seed 004 §3.3.2);
- ``supervised``, ``oracle``, ``berundanet_{l1,l2,kmeans,mumford_shah}`` and ``fixmatch`` are networks trained from
  scratch (:data:`TRAINED_BASELINES`): the fine-tuning protocols only (not ``finetune_fixmatch``), at
  ``evaluate.baseline_fractions`` (seed 004 Table 3.1 uses all labels); ``segnet`` trains them as a SegNet
  instead of the U-Net (Table 3.1's two columns);
- the multi-modal protocols (:data:`MODAL_PROTOCOLS`) run one job per downstream subset of modalities
  (``<protocol>_<subset>``), for the methods pretrained on those modalities and ``random`` (:func:`runs_subset`);
  a method pretrained on elevation alone (``mm_ssl_dem``) runs no RGB protocol.

A job scores its test set (``evaluate.test_set``: :data:`TEST_SETS`, or ``auto``, which picks ``test_cities``
or ``labeled_holdout`` from the data when the job runs).

Appearance encoders are ``random-<arch>``, ``imagenet-<arch>`` (arch: a key of ``appearance.weights``) or
``ssl-<method>`` (a method of ``pretrain.methods``).
"""

from __future__ import annotations

from tmf.data.minifrance import DEM_SOURCES
from tmf.modalities import RGB, SUBSETS, method_modalities

PROTOCOLS = ("linear", "finetune", "finetune_horospherical", "finetune_euclidean", "finetune_fixmatch", "segnet",
             "knn", "logreg", "finetune_mm", "supcon_mm")
FINETUNE_PROTOCOLS = ("finetune", "finetune_horospherical", "finetune_euclidean", "finetune_fixmatch", "segnet")
MODAL_PROTOCOLS = ("finetune_mm", "supcon_mm")  # one job per evaluate.multimodal.subsets (tmf.evaluate.multimodal)
PROBE_PROTOCOLS = ("linear", "knn", "logreg")
SCENE_PROTOCOLS = ("knn", "logreg")  # one label per sub-tile (its dominant class): no pixel confusion matrix, no map
HEAD_PROTOCOLS = ("finetune_horospherical", "finetune_euclidean")  # one job per evaluate.hyperbolic.dims
FIXMATCH_PROTOCOL = "finetune_fixmatch"  # an encoder fine-tuned with FixMatch's L_u: encoders only
SEGNET_PROTOCOL = "segnet"  # a SegNet instead of the U-Net: networks trained from scratch only
ENCODER_BASELINES = ("random", "imagenet")  # encoders: every protocol but segnet
TRAINED_BASELINES = ("supervised", "oracle", "berundanet_l1", "berundanet_l2", "berundanet_kmeans",
                     "berundanet_mumford_shah", "fixmatch")  # from scratch, fine-tuning protocols only
BASELINES = ENCODER_BASELINES + TRAINED_BASELINES
# The trained baselines with a term on unlabeled data, and the evaluate.semisup section of that term.
SEMISUPERVISED_LOSS = {"berundanet_l1": "l1", "berundanet_l2": "l2", "berundanet_kmeans": "kmeans",
                       "berundanet_mumford_shah": "mumford_shah", "fixmatch": "fixmatch"}
SEMISUPERVISED_BASELINES = tuple(SEMISUPERVISED_LOSS)


def semisup_term(protocol: str, method: str) -> str | None:
    """The unlabeled-data term a job trains with (a key of ``evaluate.semisup``), or ``None``."""
    return "fixmatch" if protocol == FIXMATCH_PROTOCOL else SEMISUPERVISED_LOSS.get(method)


def architecture(protocol: str) -> str:
    """The network a fine-tuning protocol trains: ``segnet`` or ``unet`` (seed 004 Table 3.1's two columns)."""
    return "segnet" if protocol == SEGNET_PROTOCOL else "unet"


def runs(protocol: str, method: str) -> bool:
    """Whether ``method`` is evaluated under the RGB ``protocol`` (without a head dimension; the multi-modal
    protocols: :func:`runs_subset`).

    Encoders (SSL methods, random, imagenet): every protocol but ``segnet``, which has no ResNet encoder to start
    from, when they were pretrained on RGB. Networks trained from scratch: the fine-tuning protocols but ``finetune_fixmatch``, whose from-scratch
    counterpart is the ``fixmatch`` baseline.
    """
    if method in TRAINED_BASELINES:
        return protocol in FINETUNE_PROTOCOLS and protocol != FIXMATCH_PROTOCOL
    return protocol != SEGNET_PROTOCOL and RGB in method_modalities(method)  # mm_ssl_dem: the modal protocols only


# evaluate.test_set (tmf.evaluate.testsets): what a job scores; `auto` picks test_cities or labeled_holdout per data
TEST_SETS = ("test_cities", "labeled_holdout", "cross_city")
AUTO_TEST_SET = "auto"
HOLDOUT_TEST_SETS = ("labeled_holdout", AUTO_TEST_SET)  # the values whose jobs read evaluate.holdout

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
