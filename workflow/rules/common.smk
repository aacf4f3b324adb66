import os

from snakemake.utils import validate

from tmf.config import coerce_strings
from tmf.evaluate.plan import evaluation_jobs
from tmf.workflow import as_json, resolve_methods, setup_environment


# Values given as `--config section='{key: 1}'` arrive as strings: give them the schema's types first.
config.update(coerce_strings(dict(config)))
# Fills in every default of the schema, so the rest of the workflow reads config[...] without .get().
validate(config, "../schemas/params.schema.yaml")
setup_environment(config)
# `all` stands for every registered method; from here on config lists them by name.
config["pretrain"]["methods"] = resolve_methods(config)


SOURCE = config["data"]["source"]
RAW = f"data/raw/{SOURCE}"
TINY = "data/tinyminifrance"
MANIFEST = f"{TINY}/manifest.csv"
PACKED_IMAGES = f"{TINY}/packed/images.npy"
PACKED_LABELS = f"{TINY}/packed/labels.npy"
SOFTWARE = "../envs/tmf.yaml"


wildcard_constraints:
    source="synthetic|minifrance|dfc2022",
    method="[a-z0-9_]+",
    seed=r"\d+",
    encoder="[a-z0-9_-]+",
    protocol="[a-z0-9_]+",
    fraction=r"[0-9.]+",


def without(section, *keys):
    """A params section minus the keys that only enumerate jobs (methods, seeds...): adding a method must
    not re-run the jobs of the others."""
    return {k: v for k, v in config[section].items() if k not in keys}


DEVICE = config["device"]


def pretrain_params(method):
    """Exactly what one method's run depends on: the shared training settings and its own method params."""
    cfg = without("pretrain", "methods", "seeds", "method_params")
    cfg["method_params"] = {method: config["pretrain"].get("method_params", {}).get(method, {})}
    return as_json(cfg)


def pretrained_encoder(method, seed=None):
    """The encoder a later stage reads for an SSL method: the same seed when it was pretrained, else the first."""
    seeds = config["pretrain"]["seeds"]
    s = int(seed) if seed is not None and int(seed) in seeds else seeds[0]
    return f"results/pretrain/{method}/seed{s}/encoder.pt"


def notebook_params(**kw):
    """Parameters of a report notebook: the report section (figure settings) and the files it reads."""
    return as_json({"source": SOURCE, "dpi": config["report"]["dpi"], **kw})


def evaluation_params(protocol, method):
    """Exactly what one evaluation job depends on: the shared settings and its own protocol's section."""
    from tmf.evaluate.plan import FINETUNE_PROTOCOLS, split_protocol

    protocol, _ = split_protocol(protocol)  # the head dimension is in the protocol name, not in params
    ev = config["evaluate"]
    cfg = {k: ev[k] for k in ("backbone", "examples", "eval_batch")}
    if method == "imagenet":
        cfg["imagenet_weights"] = ev["imagenet_weights"]
    if protocol in FINETUNE_PROTOCOLS:
        cfg["finetune"] = ev["finetune"]
        if method.startswith("berundanet"):
            cfg["semisup"] = ev["semisup"]
        if protocol != "finetune":
            cfg["hyperbolic"] = {k: v for k, v in ev["hyperbolic"].items() if k != "dims"}
    else:
        cfg[protocol] = ev[protocol]
    return as_json(cfg)


def appearance_params(*keys):
    """The appearance settings a step depends on (encoding, embedding and scoring read different ones)."""
    return as_json({k: config["appearance"][k] for k in keys})


def appearance_encoder_inputs(w):
    """An SSL encoder's analysis reads the pretraining stage's weights; the others only the sub-tiles."""
    inputs = {"manifest": MANIFEST, "images": PACKED_IMAGES}
    if w.encoder.startswith("ssl-"):
        inputs["weights"] = pretrained_encoder(w.encoder.removeprefix("ssl-"))
    return inputs


OVERLAY = bool(config["appearance"]["overlay_dir"])  # Fig. 2.18 only when a folder of external GeoTIFFs is given


def appearance_figure_inputs(w):
    """The figures draw the first t-SNE seed's embedding and surfaces (and the overlay when there is one)."""
    d, seed = f"results/appearance/{w.encoder}", config["appearance"]["seeds"][0]
    inputs = {"manifest": MANIFEST, "summary": f"{d}/summary.json", "coverage": f"{d}/coverage_summary.csv",
              "splits": f"{d}/split_coverage_summary.csv", "embedding": f"{d}/embedding_seed{seed}.npy",
              "surfaces": f"{d}/surfaces_seed{seed}.npz"}
    if OVERLAY:
        inputs["overlay"] = f"{d}/overlay.npz"
    return inputs


# ---- evaluation: the plan of jobs is tmf.evaluate.plan
EVAL_JOBS = {job.out: job for job in evaluation_jobs(config)}


def evaluation_job(w):
    return EVAL_JOBS[f"results/evaluate/{w.protocol}/{w.method}/frac{w.fraction}/seed{w.seed}"]


def evaluation_inputs(w):
    job = evaluation_job(w)
    inputs = {"manifest": MANIFEST, "images": PACKED_IMAGES, "labels": PACKED_LABELS}
    if job.encoder != "none":
        inputs["encoder"] = job.encoder
    return inputs
