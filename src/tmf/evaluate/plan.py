"""Which evaluation jobs a parameter set asks for (pure Python, no torch: the Snakefile imports it).

One job per (protocol, method, fraction, seed), written to
``results/evaluate/<protocol>/<method>/frac<f>/seed<k>/metrics.json`` (docs/file-formats.md). Rules:

- methods = ``pretrain.methods`` (self-supervised encoders, from ``results/pretrain/<method>/seed<p>/encoder.pt``)
  + ``evaluate.baselines``;
- SSL methods, ``random`` and ``imagenet`` run every protocol at every ``evaluate.fractions`` for the fine-tuning
  protocols and at ``evaluate.probe_fractions`` for the frozen probes;
- ``supervised``, ``oracle``, ``berundanet_l1``, ``berundanet_kmeans`` are trained networks, not encoders: only the
  fine-tuning protocols, at ``evaluate.baseline_fractions`` (seed 004 Table 3.1 uses all labels);
- evaluation seed ``seeds[i]`` uses the encoder pretrained with ``pretrain.seeds[i mod len(pretrain.seeds)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("linear", "finetune", "finetune_horospherical", "finetune_euclidean", "knn", "logreg")
FINETUNE_PROTOCOLS = ("finetune", "finetune_horospherical", "finetune_euclidean")
PROBE_PROTOCOLS = ("linear", "knn", "logreg")
ENCODER_BASELINES = ("random", "imagenet")  # encoders: every protocol
TRAINED_BASELINES = ("supervised", "oracle", "berundanet_l1", "berundanet_kmeans")  # fine-tuning only
BASELINES = ENCODER_BASELINES + TRAINED_BASELINES


HEAD_PROTOCOLS = ("finetune_horospherical", "finetune_euclidean")  # one job per evaluate.hyperbolic.dims


def head_protocol(protocol: str, dim: int) -> str:
    """``finetune_horospherical`` at d = 3 → ``finetune_horospherical_d3`` (the job's protocol folder)."""
    return f"{protocol}_d{dim}"


def split_protocol(name: str) -> tuple[str, int | None]:
    """``finetune_euclidean_d128`` → ``("finetune_euclidean", 128)``; other protocols → ``(name, None)``."""
    for base in HEAD_PROTOCOLS:
        if name.startswith(base + "_d") and name[len(base) + 2:].isdigit():
            return base, int(name[len(base) + 2:])
    return name, None


def fraction_tag(fraction: float) -> str:
    """``0.01 → '0.01'``, ``1.0 → '1'``: the ``frac<f>`` folder name (shortest exact repr)."""
    return format(float(fraction), "g")


@dataclass(frozen=True)
class Job:
    protocol: str
    method: str
    fraction: float
    seed: int
    encoder: str  # path of the encoder file, "imagenet" weights path, or "none"

    @property
    def out(self) -> str:
        return f"results/evaluate/{self.protocol}/{self.method}/frac{fraction_tag(self.fraction)}/seed{self.seed}"


def is_ssl(method: str) -> bool:
    return method not in BASELINES


def encoder_path(method: str, eval_seed_index: int, params: dict) -> str:
    """The encoder file a method starts from ("none" for random-init baselines)."""
    if is_ssl(method):
        pseeds = params["pretrain"]["seeds"]
        return f"results/pretrain/{method}/seed{pseeds[eval_seed_index % len(pseeds)]}/encoder.pt"
    if method == "imagenet":
        path = params["evaluate"]["imagenet_weights"]
        if not path:
            raise ValueError("evaluate.baselines lists 'imagenet' but evaluate.imagenet_weights is empty "
                             "(give the path of torchvision ImageNet weights for evaluate.backbone)")
        return path
    return "none"


def evaluation_jobs(params: dict) -> list[Job]:
    """Every job of a validated parameter set (``tmf.config.validate``), in a stable order."""
    ev = params["evaluate"]
    methods = list(dict.fromkeys(list(params["pretrain"]["methods"]) + list(ev["baselines"])))
    jobs = []
    protocols = []
    for p in ev["protocols"]:
        protocols += [head_protocol(p, d) for d in ev["hyperbolic"]["dims"]] if p in HEAD_PROTOCOLS else [p]
    for protocol in protocols:
        base, _ = split_protocol(protocol)
        for method in methods:
            if method in TRAINED_BASELINES:
                if base not in FINETUNE_PROTOCOLS:
                    continue
                fractions = ev["baseline_fractions"]
            else:
                fractions = ev["fractions"] if base in FINETUNE_PROTOCOLS else ev["probe_fractions"]
            for fraction in fractions:
                for i, seed in enumerate(ev["seeds"]):
                    jobs.append(Job(protocol, method, float(fraction), int(seed), encoder_path(method, i, params)))
    return jobs
