"""``tmf appearance-*`` and ``tmf classes``: the appearance and class-representativeness stage (docs/appearance.md).

encode (one job per encoder) → embed (one job per t-SNE seed) → score (surfaces + coverage, all seeds) →
figures; ``classes`` is encoder-independent.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from tmf.cli import add_cfg_arguments

log = logging.getLogger("tmf.appearance")


def _encoder_help() -> str:
    from tmf.cli import choices_help
    from tmf.plan.checks import encoder_names

    return choices_help("the encoder (docs/appearance.md; ssl-<method>: the encoder pretrained by <method>)",
                        encoder_names())


def _check_encoder(name: str) -> None:
    """An unknown encoder name is a one-line error with the closest valid name, before any file is read."""
    from tmf.config import check_name
    from tmf.plan.checks import encoder_names

    check_name("--encoder", name, encoder_names(), "encoder")


def register(sub) -> None:
    encoder_help = _encoder_help()
    p = sub.add_parser("appearance-encode", help="encode every sub-tile with a CNN (features.npy + encoder.json)")
    p.add_argument("--encoder", required=True, help=encoder_help)
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--packed", required=True, help="data/tinyminifrance/packed (or its images.npy)")
    p.add_argument("--out", required=True, help="results/appearance/<encoder>/features.npy")
    p.add_argument("--weights", default="", help="weights file (imagenet: overrides appearance.weights.<arch>; "
                   "ssl: the pretraining stage's encoder.pt)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    add_cfg_arguments(p)
    p.set_defaults(func=_encode)

    p = sub.add_parser("appearance-embed", help="t-SNE of the features for one seed (embedding_seed<k>.npy)")
    p.add_argument("--features", required=True, help="results/appearance/<encoder>/features.npy")
    p.add_argument("--seed", type=int, required=True, help="the t-SNE seed")
    p.add_argument("--out", required=True, help="results/appearance/<encoder>/embedding_seed<k>.npy")
    add_cfg_arguments(p)
    p.set_defaults(func=_embed)

    p = sub.add_parser("appearance-score", help="one-class SVM surfaces, IoU/IoT tables and summary.json")
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--embeddings", nargs="+", required=True, help="embedding_seed<k>.npy files (k from the name)")
    p.add_argument("--out-dir", required=True, help="results/appearance/<encoder>")
    p.add_argument("--encoder", required=True, help=encoder_help)
    p.add_argument("--encoder-info", default=None, help="encoder.json written by appearance-encode "
                   "(default: <out-dir>/encoder.json when it exists)")
    add_cfg_arguments(p)
    p.set_defaults(func=_score)

    p = sub.add_parser("appearance-figures", help="the appearance figures (Figs. 2.10, 2.12, 2.13, 2.15, 2.17)")
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--dir", required=True, help="results/appearance/<encoder> (reads summary.json, embeddings, "
                   "surfaces, coverage_summary.csv)")
    p.add_argument("--out-dir", default=None, help="where the PNGs go (default: <dir>/figures)")
    p.add_argument("--seed", type=int, default=None, help="seed drawn (default: the first one)")
    p.add_argument("--overlay", default=None, help="overlay.npz from appearance-overlay (Fig. 2.18)")
    p.add_argument("--dpi", type=int, default=110, help="figure resolution (report.dpi)")
    p.set_defaults(func=_figures)

    p = sub.add_parser("appearance-overlay", help="embed external GeoTIFFs together with the sub-tiles (Fig. 2.18)")
    p.add_argument("--encoder", required=True, help=encoder_help)
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--packed", required=True, help="data/tinyminifrance/packed (or its images.npy)")
    p.add_argument("--features", required=True, help="the sub-tiles' features.npy of this encoder")
    p.add_argument("--overlay-dir", default=None, help="folder of GeoTIFFs (default: appearance.overlay_dir)")
    p.add_argument("--seed", type=int, default=None, help="t-SNE seed (default: the first of appearance.seeds)")
    p.add_argument("--out", required=True, help="results/appearance/<encoder>/overlay.npz")
    p.add_argument("--weights", default="", help="weights file, as for appearance-encode")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    add_cfg_arguments(p)
    p.set_defaults(func=_overlay)

    p = sub.add_parser("classes", help="class representativeness and colour histograms (Figs. 2.4, 2.14, 2.16)")
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--packed", required=True, help="data/tinyminifrance/packed (or its images.npy)")
    p.add_argument("--out-dir", required=True, help="results/classes")
    p.add_argument("--dpi", type=int, default=110, help="figure resolution (report.dpi)")
    p.set_defaults(func=_classes)


def _cfg(args) -> dict:
    from tmf.config import section_arg

    return section_arg(args.cfg, args.params, "appearance")


def _open(args):
    """The manifest and the memory-mapped packed images (tmf.data.packed checks them)."""
    from tmf.data.packed import open_packed

    packed = open_packed(args.manifest, args.packed)
    return packed.manifest, packed.images


def _weights_for(encoder: str, cli_weights: str, cfg: dict) -> str:
    from tmf.appearance.features import parse_encoder

    spec = parse_encoder(encoder)
    if cli_weights:
        return cli_weights
    if spec.kind == "imagenet":
        return cfg.get("weights", {}).get(spec.arch, "")
    return ""


def _encode(args) -> int:
    import time

    import numpy as np
    import torch

    from tmf.appearance.features import MissingWeightsError, encode_images, load_encoder
    from tmf.device import configure, resolve_device
    from tmf.io import atomic_path, write_json

    _check_encoder(args.encoder)
    cfg = _cfg(args)
    out = Path(args.out)
    info_path = out.parent / "encoder.json"
    manifest, images = _open(args)
    weights = _weights_for(args.encoder, args.weights, cfg)
    info = {"encoder": args.encoder, "weights": weights, "feature_layer": cfg["feature_layer"],
            "input_size": cfg["input_size"], "n": int(len(manifest))}
    try:
        model = load_encoder(args.encoder, weights or None, cfg["random_init_seed"])
    except MissingWeightsError as e:
        # The other encoders still run; this one leaves empty outputs and says why.
        log.warning("appearance-encode: %s", e)
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, np.zeros((0, 0), dtype=np.float32))
        write_json(info_path, {**info, "status": "skipped", "reason": str(e)})
        return 0
    device = resolve_device(args.device)
    configure(device, args.threads)
    t0 = time.perf_counter()
    feats = encode_images(model, images, cfg["feature_layer"], cfg["batch_size"], cfg["input_size"], device)
    seconds = time.perf_counter() - t0
    with atomic_path(out, suffix=".npy") as tmp:
        np.save(tmp, feats)
    write_json(info_path, {**info, "status": "ok", "reason": "", "dim": int(feats.shape[1]),
                           "device": str(device), "torch": torch.__version__, "seconds": round(seconds, 3)})
    log.info("encoded %d sub-tiles with %s into %d-d features in %.1f s", len(feats), args.encoder,
             feats.shape[1], seconds)
    return 0


def _embed(args) -> int:
    import time

    import numpy as np

    from tmf.appearance.embedding import tsne_embed
    from tmf.io import atomic_path

    cfg = _cfg(args)
    path = Path(args.features)
    if not path.is_file():
        raise FileNotFoundError(f"features not found: {path}")
    feats = np.load(path)
    t0 = time.perf_counter()
    if feats.size == 0:  # the encoder was skipped (see encoder.json): nothing to embed
        emb = np.zeros((0, 2), dtype=np.float32)
        log.warning("appearance-embed: %s is empty (encoder skipped); writing an empty embedding", path)
    else:
        emb = tsne_embed(feats, args.seed, **cfg["tsne"])
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, emb)
    log.info("t-SNE seed %d of %d points in %.1f s", args.seed, len(emb), time.perf_counter() - t0)
    return 0


def seed_of(path: str | Path) -> int:
    m = re.search(r"seed(\d+)", Path(path).name)
    if not m:
        raise ValueError(f"{path}: cannot tell the seed; name embeddings embedding_seed<k>.npy")
    return int(m.group(1))


def _score(args) -> int:
    import numpy as np

    from tmf.appearance.analysis import run_scores, skipped_outputs
    from tmf.data.packed import read_manifest
    from tmf.io import read_json

    _check_encoder(args.encoder)
    cfg = _cfg(args)
    manifest = read_manifest(args.manifest)
    info_path = Path(args.encoder_info) if args.encoder_info else Path(args.out_dir) / "encoder.json"
    info = read_json(info_path) if info_path.is_file() else {}
    embeddings = {}
    for p in args.embeddings:
        if not Path(p).is_file():
            raise FileNotFoundError(f"embedding not found: {p}")
        embeddings[seed_of(p)] = np.load(p)
    if info.get("status") == "skipped" or any(e.size == 0 for e in embeddings.values()):
        reason = info.get("reason") or "empty features/embedding (the encoder was skipped)"
        skipped_outputs(args.out_dir, args.encoder, reason, sorted(embeddings), cfg)
        return 0
    summary = run_scores(manifest, embeddings, cfg, args.out_dir, args.encoder, info)
    s = summary["split_coverage"]
    from tmf.tracking import flatten_numbers

    args.run.log_metrics(flatten_numbers({"split_coverage": s}))  # the coverage scores of Table 2.7
    for key, v in s.items():
        log.info("%s: IoU %.3f ± %.3f, IoT %.3f ± %.3f", key, v["iou"]["mean"] or float("nan"),
                 v["iou"]["std"] or 0.0, v["iot"]["mean"] or float("nan"), v["iot"]["std"] or 0.0)
    return 0


def _figures(args) -> int:
    from tmf.appearance.figures import appearance_figures

    out = appearance_figures(args.manifest, args.dir, args.out_dir, args.seed, args.overlay, args.dpi)
    log.info("wrote %d figures", len(out))
    return 0


def _overlay(args) -> int:
    import numpy as np

    from tmf.appearance.features import MissingWeightsError, load_encoder
    from tmf.appearance.overlay import overlay_embedding
    from tmf.device import configure, resolve_device
    from tmf.io import atomic_path

    _check_encoder(args.encoder)
    cfg = _cfg(args)
    folder = args.overlay_dir or cfg.get("overlay_dir", "")
    if not folder:
        raise ValueError("appearance-overlay: no folder given (--overlay-dir or appearance.overlay_dir)")
    manifest, images = _open(args)
    feats = np.load(args.features)
    seed = args.seed if args.seed is not None else cfg["seeds"][0]
    if feats.size == 0:
        log.warning("appearance-overlay: features are empty (encoder skipped); writing an empty overlay")
        result = {"embedding": np.zeros((0, 2), np.float32), "overlay": np.zeros((0, 2), np.float32),
                  "files": np.array([], dtype=str)}
    else:
        try:
            model = load_encoder(args.encoder, _weights_for(args.encoder, args.weights, cfg) or None,
                                 cfg["random_init_seed"])
        except MissingWeightsError as e:
            raise ValueError(str(e)) from None
        device = resolve_device(args.device)
        configure(device, args.threads)
        result = overlay_embedding(model, feats, folder, manifest, images.shape[1], cfg, seed, device)
    with atomic_path(args.out, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **result)
    return 0


def _classes(args) -> int:
    from tmf.appearance.classes import (
        city_class_histograms,
        classes_present,
        colour_histograms,
        split_class_histograms,
    )
    from tmf.appearance.figures import class_histogram_figure, colour_histogram_figure
    from tmf.io import write_csv

    manifest, images = _open(args)
    out = Path(args.out_dir)
    city = city_class_histograms(manifest)
    split = split_class_histograms(manifest)
    city.insert(1, "n_classes", classes_present(city))
    split.insert(1, "n_classes", classes_present(split))
    write_csv(out / "class_histograms_city.csv", city.reset_index())
    write_csv(out / "class_histograms_split.csv", split.reset_index())
    colours = colour_histograms(images, manifest["split"].to_numpy())
    write_csv(out / "colour_histograms.csv", colours)
    class_histogram_figure(city, out / "figures" / "class_histograms_city.png", args.dpi)
    class_histogram_figure(split, out / "figures" / "class_histograms_split.png", args.dpi)
    colour_histogram_figure(colours, out / "figures" / "colour_histograms.png", args.dpi)
    return 0
