# One job per (method, seed): self-supervised pretraining on the labeled + unlabeled cities.


def pretrain_params(method):
    """Exactly what one method's run depends on: the shared training settings and its own method params."""
    cfg = without("pretrain", "methods", "seeds", "method_params")
    cfg["method_params"] = {method: config["pretrain"].get("method_params", {}).get(method, {})}
    return as_json({**cfg, **compute_params()})


rule pretrain:
    input:
        manifest=MANIFEST,
        images=PACKED_IMAGES,
    output:
        encoder="results/pretrain/{method}/seed{seed}/encoder.pt",
        metrics="results/pretrain/{method}/seed{seed}/metrics.json",
        history="results/pretrain/{method}/seed{seed}/history.csv",
    params:
        cfg=lambda w: pretrain_params(w.method),
    log:
        "logs/pretrain/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/pretrain/{method}/seed{seed}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["device"] == "cuda" else 0,
    shell:
        "tmf pretrain --method {wildcards.method} --seed {wildcards.seed} --manifest {input.manifest} "
        "--packed {TINY}/packed --out results/pretrain/{wildcards.method}/seed{wildcards.seed} "
        "--cfg {params.cfg:q} > {log} 2>&1"


def pretrained_encoder(method, seed=None):
    """The encoder a later stage reads for an SSL method: the same seed when it was pretrained, else the first."""
    seeds = config["pretrain"]["seeds"]
    s = int(seed) if seed is not None and int(seed) in seeds else seeds[0]
    return f"results/pretrain/{method}/seed{s}/encoder.pt"
