"""What a configuration must satisfy beyond the schema, checked before any job runs: names that refer to other
parameters, and constraints between parameters that a job would otherwise fail on, hours in.

Each error is a :class:`tmf.config.ParamsError` naming the parameter (and, for a misspelt name, the closest valid
one). Constraints that depend on the data are checked where the data is known: for the embedded synthetic data
the tile grid is a function of the parameters, so the tinyMiniFrance draw is checked here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tmf.config import ParamsError, check_name, method_names, schema
from tmf.modalities import DEM, RGB, SUBSETS, method_modalities, needs_dem
from tmf.plan.names import (
    FIXED_ENCODER_KINDS,
    MODAL_PROTOCOLS,
    SCENE_PROTOCOLS,
    SEGNET_PROTOCOL,
    SSL_ENCODER,
    TRAINED_BASELINES,
    has_elevation,
    runs,
    split_modal,
    split_protocol,
    ssl_encoder_method,
)

RESNET_STAGES = 4  # appearance.feature_layer stage<k>: a ResNet has 4 stages, VGG-16 5


def check(params: dict[str, Any]) -> None:
    """Raise on the first constraint ``params`` (validated, methods resolved) breaks."""
    _check_data(params)
    _check_elevation(params)
    _check_pretrain(params)
    _check_appearance(params)
    _check_evaluate(params)
    _check_predict(params)


def appearance_archs() -> list[str]:
    """Architectures of the random-<arch> / imagenet-<arch> encoders: the keys of ``appearance.weights``."""
    return list(schema()["properties"]["appearance"]["properties"]["weights"]["properties"])


def encoder_names(methods: list[str] | None = None) -> list[str]:
    """The appearance encoders: ``random-<arch>`` and ``imagenet-<arch>``, then ``ssl-<method>`` for ``methods``
    (default: every registered method)."""
    methods = method_names() if methods is None else methods
    return ([f"{kind}-{arch}" for kind in FIXED_ENCODER_KINDS for arch in appearance_archs()]
            + [f"{SSL_ENCODER}{m}" for m in methods])


def _check_data(params: dict[str, Any]) -> None:
    d, sub = params["data"], params["subsample"]
    if d["source"] != "synthetic" and not d["url"]:
        raise ParamsError(f"data.url is empty: data.source {d['source']!r} reads real data from it (an archive, "
                          "a folder in the public layout, or an http(s):// URL; see README 'Real data')")
    if d["source"] == "synthetic":
        _check_synthetic_draw(d["synthetic"], sub)


def _check_synthetic_draw(syn: dict[str, Any], sub: dict[str, Any]) -> None:
    """Draw tinyMiniFrance from the tile grid the synthetic generator will write (one tile_size² tile per tile of
    each city), with the subsampling job's own function: what it would refuse is refused now."""
    import pandas as pd

    from tmf.data.minifrance import CITIES
    from tmf.data.subsample import select_subtiles
    from tmf.data.synthetic import n_tiles

    size = syn["tile_size"]
    if sub["size"] > size:
        raise ParamsError(f"subsample.size = {sub['size']} px exceeds the embedded data's tiles of "
                          f"data.synthetic.tile_size = {size} px")
    rows = [{"city": c.name, "split": c.split, "tile": f"{c.name}-{k}", "height": size, "width": size,
             "image": f"{c.name}-{k}.tif", "label": f"{c.name}-{k}_UA2012.tif"}
            for c in CITIES for k in range(n_tiles(c, syn["tile_scale"], syn["min_tiles"]))]
    try:
        select_subtiles(pd.DataFrame(rows), sub["n_subtiles"], sub["size"], sub["seed"])
    except ParamsError as e:
        raise ParamsError(f"{e} (the embedded data: data.synthetic.tile_scale = {syn['tile_scale']}, "
                          f"min_tiles = {syn['min_tiles']}, tile_size = {size})") from None


def _check_elevation(params: dict[str, Any]) -> None:
    """The multi-modal methods and protocols that read elevation need data that has it. Known here: data.dem none,
    or a source without DEMs (MiniFrance); a DFC2022 copy whose tiles lack their RGEALTI rasters is found by the
    job that reads them (tmf.data.packed.Packed.require_dem names the method)."""
    if has_elevation(params):
        return
    d = params["data"]
    why = "data.dem is none" if d["dem"] == "none" else f"data.source {d['source']!r} has no elevation model " \
        "(MiniFrance ships none; DFC2022's RGEALTI and the embedded synthetic data have one)"
    for method in params["pretrain"]["methods"]:
        if needs_dem(method):
            raise ParamsError(f"pretrain.methods: {method} pretrains on elevation, but {why}")
    ev = params["evaluate"]
    modal = [p for p in ev["protocols"] if p in MODAL_PROTOCOLS]
    dem_subsets = [s for s in ev["multimodal"]["subsets"] if DEM in SUBSETS[s]]
    if modal and dem_subsets:
        raise ParamsError(f"evaluate.multimodal.subsets: {dem_subsets} of evaluate.protocols {modal} need elevation, "
                          f"but {why}; keep the subset rgb only, or use data with elevation")


def _check_pretrain(params: dict[str, Any]) -> None:
    pre = params["pretrain"]
    size = params["subsample"]["size"]
    if pre["crop_size"] > size:
        raise ParamsError(f"pretrain.crop_size = {pre['crop_size']} px exceeds the sub-tiles' subsample.size = "
                          f"{size} px: a crop cannot be larger than the image it is cut from")
    if pre["ddp"] and pre["nproc"] > 1 and pre["batch_size"] % pre["nproc"]:
        raise ParamsError(f"pretrain.batch_size = {pre['batch_size']} is not divisible by pretrain.nproc = "
                          f"{pre['nproc']} (the global batch is split evenly over the processes)")
    if "hydes" in pre["methods"]:
        h = pre["method_params"]["hydes"]
        if h["n_global"] + h["n_local"] < 2:
            raise ParamsError("pretrain.method_params.hydes: n_global + n_local must be at least 2 (HyDeS "
                              f"compares views), got {h['n_global']} + {h['n_local']}")


def _check_appearance(params: dict[str, Any]) -> None:
    a, pre = params["appearance"], params["pretrain"]
    fixed = encoder_names([])
    pretrained = encoder_names(pre["methods"])[len(fixed):]
    resnets = []
    for encoder in a["encoders"]:
        method = ssl_encoder_method(encoder)
        if method is None:
            check_name("appearance.encoders", encoder, fixed + pretrained, "encoder")
            resnets += [encoder] if not encoder.endswith("vgg16") else []
            continue
        if method in method_names() and method not in pre["methods"]:
            raise ParamsError(f"appearance.encoders: {encoder!r} analyses the encoder pretrained by {method!r}, "
                              f"but pretrain.methods is {pre['methods']}: add {method!r} there or remove "
                              f"{encoder!r}")
        if method in method_names() and RGB not in method_modalities(method):
            raise ParamsError(f"appearance.encoders: {encoder!r}: {method!r} pretrains no RGB encoder (elevation "
                              "only), and the appearance analysis encodes the RGB sub-tiles")
        check_name("appearance.encoders", encoder, pretrained + fixed, "encoder")
        resnets.append(encoder)  # pretrain.backbone is a ResNet
    layer = a["feature_layer"]
    if layer.startswith("stage") and int(layer[5:]) > RESNET_STAGES and resnets:
        raise ParamsError(f"appearance.feature_layer = {layer}: a ResNet has stages 1..{RESNET_STAGES}, and "
                          f"appearance.encoders lists ResNets {resnets} (stage5 exists only in VGG-16)")
    if a["overlay_dir"]:
        folder = Path(a["overlay_dir"])
        if not folder.is_dir():
            raise ParamsError(f"appearance.overlay_dir: {folder} is not a folder")
        if not any(p.suffix.lower() in (".tif", ".tiff") for p in folder.rglob("*")):
            raise ParamsError(f"appearance.overlay_dir: no .tif/.tiff file under {folder}")


def _check_evaluate(params: dict[str, Any]) -> None:
    ev, pre = params["evaluate"], params["pretrain"]
    if "imagenet" in ev["baselines"] and not ev["imagenet_weights"]:
        raise ParamsError("evaluate.baselines lists 'imagenet' but evaluate.imagenet_weights is empty (give the "
                          "path of torchvision ImageNet weights for evaluate.backbone)")
    if pre["backbone"] != ev["backbone"]:
        raise ParamsError(f"evaluate.backbone = {ev['backbone']} differs from pretrain.backbone = "
                          f"{pre['backbone']}: the pretrained encoders of pretrain.methods are evaluated")
    if SEGNET_PROTOCOL in ev["protocols"] and not any(runs(SEGNET_PROTOCOL, m) for m in ev["baselines"]):
        raise ParamsError(f"evaluate.protocols lists {SEGNET_PROTOCOL!r}, but no method runs under it: it trains "
                          f"the networks of evaluate.baselines trained from scratch ({', '.join(TRAINED_BASELINES)})"
                          f", and evaluate.baselines is {ev['baselines']}")
    ft = ev["finetune"]
    if ft["steps"] == 0 and ft["max_steps"] < ft["min_steps"]:
        raise ParamsError(f"evaluate.finetune.max_steps = {ft['max_steps']} is below min_steps = {ft['min_steps']} "
                          "(the cap and floor of the epoch-scaled fine-tuning schedule, steps = 0)")


def _check_predict(params: dict[str, Any]) -> None:
    pr = params["predict"]
    if pr["enabled"] and pr["overlap"] > pr["window"] // 2:
        raise ParamsError(f"predict.overlap = {pr['overlap']} px exceeds half of predict.window = {pr['window']} px "
                          "(a pixel is blended from at most two windows along each axis)")
    if pr["enabled"] and params["evaluate"]["test_set"] == "cross_city":
        raise ParamsError("predict.enabled with evaluate.test_set = cross_city: the maps need one model, and "
                          "cross_city trains one per fold; set predict.enabled: false or another evaluate.test_set")


def mappable(protocol: str) -> bool:
    """Whether an evaluation protocol (its folder name) trains a model that maps RGB tiles: a pixel protocol
    that reads nothing but the image (the maps stage reads the tiles' RGB only)."""
    base = split_protocol(protocol)[0]
    return base not in SCENE_PROTOCOLS and split_modal(base)[1] is None


def check_map_source(wanted: dict[str, str], planned: list[dict[str, str]]) -> None:
    """``wanted`` (the wildcards predict.* name) must be one of the ``planned`` evaluation jobs' wildcards; else
    an error naming the first parameter that points outside them."""
    protocol, method = wanted["protocol"], wanted["method"]
    pixel = [w for w in planned if mappable(w["protocol"])]
    protocols = sorted({w["protocol"] for w in pixel})
    if not pixel:
        raise ParamsError("predict.enabled: none of evaluate.protocols makes maps of RGB tiles (knn and logreg "
                          "classify whole sub-tiles, the multi-modal protocols also read elevation); add linear or "
                          "finetune, or set predict.enabled: false")
    if split_protocol(protocol)[0] in SCENE_PROTOCOLS:
        raise ParamsError(f"predict.protocol = {protocol!r} classifies whole sub-tiles and makes no map; use one "
                          f"of {protocols}")
    if not mappable(protocol):
        raise ParamsError(f"predict.protocol = {protocol!r} also reads elevation, and the maps read the RGB tiles "
                          f"only; use one of {protocols}")
    if wanted in planned:
        return
    check_name("predict.protocol", protocol, protocols, "protocol (of evaluate.protocols)")
    same = [w for w in pixel if w["protocol"] == protocol]
    check_name("predict.method", method, list(dict.fromkeys(w["method"] for w in same)),
               f"method evaluated with {protocol}")
    same = [w for w in same if w["method"] == method]
    fractions = sorted({float(w["fraction"]) for w in same})
    if wanted["fraction"] not in {w["fraction"] for w in same}:
        raise ParamsError(f"predict.fraction = {wanted['fraction']}: {protocol}/{method} runs the label fractions "
                          f"{fractions} (evaluate.fractions, probe_fractions or baseline_fractions)")
    seeds = sorted({int(w["seed"]) for w in same})
    raise ParamsError(f"predict.seed = {wanted['seed']} is not one of evaluate.seeds {seeds}")
