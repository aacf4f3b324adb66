"""``tmf predict`` (land-cover maps of one split's tiles) and ``tmf map-previews`` (their figures)."""

from __future__ import annotations

import argparse
import logging

from tmf.cli import add_cfg_arguments
from tmf.data.minifrance import SPLITS

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict land-cover maps of every tile of one split (GeoTIFFs on the tiles' grids) with the model an "
             "evaluation job saved",
        description="Map every tile of SPLIT in the tile index at full size with a trained segmentation model "
                    "(model.pt, written by `tmf evaluate --save-model`): sliding windows of predict.window px "
                    "overlapping by predict.overlap px, blended by a raised-cosine cross-fade, in strips of "
                    "windows (memory bounded by the window, not the tile). Writes OUT/<City>/<stem>.tif, one band "
                    "of uint8 MiniFrance class ids on the input tile's exact grid (CRS, transform, shape; tiles "
                    "without georeference on their pixel grid, named in the log), and the index INDEX "
                    "(docs/file-formats.md, 'Maps'). Section predict of the parameters.",
    )
    p.add_argument("--tiles", required=True, help="tile index (data/tiles.csv)")
    p.add_argument("--root", required=True, help="data root the index's paths are relative to (data/raw/<source>)")
    p.add_argument("--split", required=True, choices=SPLITS,
                   help="the split whose tiles are mapped (test: MiniFrance's test cities, DFC2022's val and test)")
    p.add_argument("--model", required=True,
                   help="model.pt of an evaluation job (results/evaluate/<protocol>/<method>/frac<f>/seed<k>/)")
    p.add_argument("--out", required=True, help="folder of the maps (results/maps/<split>/tiles)")
    p.add_argument("--index", required=True, help="map index CSV to write (results/maps/<split>/maps.csv)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs (auto: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_cfg_arguments(p)
    p.set_defaults(func=_predict)

    v = sub.add_parser(
        "map-previews",
        help="draw one preview per city of a split's maps (a few tiles: image above map, class legend)",
        description="Read the map index (maps.csv of `tmf predict`) and write OUT/<City>.png for every city: "
                    "predict.preview_tiles tiles side by side, each image above its map in the MiniFrance "
                    "colours, with a legend of the predicted classes (decimated reads, any tile size).",
    )
    v.add_argument("--index", required=True, help="results/maps/<split>/maps.csv")
    v.add_argument("--root", required=True, help="data root of the images (data/raw/<source>)")
    v.add_argument("--out", required=True, help="folder of the previews (results/maps/<split>/previews)")
    v.add_argument("--tiles-per-city", type=int, default=4, help="tiles shown per city")
    v.add_argument("--dpi", type=int, default=110, help="resolution of the previews (report.dpi)")
    v.set_defaults(func=_previews)


def _predict(args) -> int:
    from tmf.config import section_arg
    from tmf.predict.run import predict_split

    cfg = section_arg(args.cfg, args.params, "predict")
    predict_split(args.tiles, args.root, args.split, args.model, args.out, args.index, cfg, device=args.device,
                  threads=args.threads)
    return 0


def _previews(args) -> int:
    from tmf.predict.previews import write_previews

    if args.tiles_per_city < 1:
        raise ValueError(f"--tiles-per-city must be at least 1, got {args.tiles_per_city}")
    write_previews(args.index, args.root, args.out, args.tiles_per_city, args.dpi)
    return 0
