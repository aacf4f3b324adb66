"""``tmf generate | fetch | index | subsample | pack``: the data stage (docs/file-formats.md, "Data")."""

from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger("tmf.data")


def register(sub: argparse._SubParsersAction) -> None:
    from tmf.cli import add_cfg_arguments

    p = sub.add_parser("generate", help="write the embedded synthetic MiniFrance-like data set (section data)")
    p.add_argument("--out", required=True, help="folder to write the public layout into (data/raw/synthetic)")
    add_cfg_arguments(p)
    p.set_defaults(func=_generate)

    p = sub.add_parser("fetch", help="bring real MiniFrance / DFC2022 data from data.url: URLs, archives or folders, "
                       "merged into one layout (section data)")
    p.add_argument("--out", required=True, help="folder that will hold the public layout (data/raw/<source>)")
    p.add_argument("--cache", default=None,
                   help="folder for the partial download (default <out>/.download); outside <out> it survives a "
                   "failed job, so the next attempt resumes")
    add_cfg_arguments(p)
    p.set_defaults(func=_fetch)

    p = sub.add_parser("index", help="index and check every tile of a data root into data/tiles.csv")
    p.add_argument("--root", required=True, help="folder holding <split>/<City>/BDORTHO/...")
    p.add_argument("--out", required=True, help="tile index CSV to write (data/tiles.csv)")
    p.add_argument("--workers", type=int, default=1, help="processes checking tiles in parallel")
    add_cfg_arguments(p)
    p.set_defaults(func=_index)

    p = sub.add_parser("subsample", help="draw tinyMiniFrance from the tile index (section subsample)")
    p.add_argument("--tiles", required=True, help="tile index (data/tiles.csv)")
    p.add_argument("--root", required=True, help="data root the index's paths are relative to")
    p.add_argument("--out", required=True, help="output folder (data/tinyminifrance)")
    p.add_argument("--workers", type=int, default=1, help="processes cropping cities in parallel")
    p.add_argument("--dem", choices=["auto", "yes", "no"], default="auto",
                   help="crop the tiles' RGEALTI elevation under each sub-tile too (manifest gets the elevation "
                   "columns): yes / no, or auto (default: when the tile index lists any DEM). The workflow "
                   "passes yes where data.source has elevation (tmf.plan)")
    add_cfg_arguments(p)
    p.set_defaults(func=_subsample)

    p = sub.add_parser("pack", help="stack tinyMiniFrance crops into packed/images.npy and labels.npy (and dem.npy, "
                       "dem_valid.npy when the manifest has elevation)")
    p.add_argument("--manifest", required=True, help="data/tinyminifrance/manifest.csv")
    p.add_argument("--out", required=True, help="output folder (data/tinyminifrance/packed)")
    p.add_argument("--workers", type=int, default=1, help="processes reading crops in parallel")
    p.set_defaults(func=_pack)


def _generate(args) -> int:
    from tmf.config import section_arg
    from tmf.data.synthetic import generate_synthetic

    cfg = section_arg(args.cfg, args.params, "data")
    syn = cfg["synthetic"]
    t0 = time.perf_counter()
    paths = generate_synthetic(args.out, seed=syn["seed"], tile_scale=syn["tile_scale"],
                               min_tiles=syn["min_tiles"], tile_size=syn["tile_size"], dem=cfg["dem"] == "auto")
    log.info("wrote %d synthetic tiles under %s in %.1f s", len(paths), args.out, time.perf_counter() - t0)
    return 0


def _fetch(args) -> int:
    from tmf.config import ParamsError, section_arg
    from tmf.data.sources import fetch

    cfg = section_arg(args.cfg, args.params, "data")
    if cfg["source"] == "synthetic":
        raise ParamsError("data.source is 'synthetic': there is nothing to fetch; run `tmf generate --out DIR` "
                          "to write the synthetic data set (or set data.source to minifrance / dfc2022)")
    if not cfg["url"]:
        raise ParamsError(f"data.url is empty: data.source {cfg['source']!r} needs the URL, archive or folder "
                          "of the data, or a list of them (IEEE DataPort needs a login: download by hand and "
                          "point data.url at the files)")
    t0 = time.perf_counter()
    root = fetch(cfg["url"], args.out, download_dir=args.cache, max_bytes=int(cfg["extract"]["max_gb"] * 1e9),
                 max_members=cfg["extract"]["max_members"])
    log.info("data of %s ready under %s in %.1f s", cfg["source"], root, time.perf_counter() - t0)
    return 0


def _index(args) -> int:
    from tmf.config import section_arg
    from tmf.data.reader import index_tiles
    from tmf.io import write_csv

    cfg = section_arg(args.cfg, args.params, "data")
    t0 = time.perf_counter()
    df = index_tiles(args.root, workers=args.workers, missing_label=cfg["missing_label"])
    write_csv(args.out, df)
    log.info("indexed %d tiles of %d cities in %.1f s -> %s", len(df), df["city"].nunique(),
             time.perf_counter() - t0, args.out)
    return 0


def _subsample(args) -> int:
    from tmf.config import section_arg
    from tmf.data.reader import read_tiles_csv
    from tmf.data.subsample import select_subtiles, write_tinyminifrance

    cfg = section_arg(args.cfg, args.params, "subsample")
    t0 = time.perf_counter()
    tiles = read_tiles_csv(args.tiles)
    manifest = select_subtiles(tiles, cfg["n_subtiles"], cfg["size"], cfg["seed"])
    dem = (tiles["dem"] != "").any() if args.dem == "auto" else args.dem == "yes"
    out = write_tinyminifrance(manifest, args.root, args.out, workers=args.workers, dem=bool(dem))
    log.info("tinyMiniFrance: %d sub-tiles of %d px in %.1f s -> %s", len(out), cfg["size"],
             time.perf_counter() - t0, args.out)
    return 0


def _pack(args) -> int:
    from tmf.data.subsample import pack

    t0 = time.perf_counter()
    written = pack(args.manifest, args.out, workers=args.workers)
    log.info("packed %s in %.1f s", ", ".join(map(str, written)), time.perf_counter() - t0)
    return 0
