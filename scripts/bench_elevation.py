"""What elevation adds to the embedded data stage: generate, index, tinyMiniFrance and pack with and without the DEM
(``data.dem: auto`` / ``none``) at the embedded default's parameters, one process, wall seconds and the load.

    PYTHONPATH=src python3 scripts/bench_elevation.py [--tile-scale 0.05] [--tile-size 512] [--n-subtiles 1400]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def stage(root: Path, dem: bool, args) -> dict[str, float]:
    from tmf.data.reader import index_tiles
    from tmf.data.subsample import pack, select_subtiles, write_tinyminifrance
    from tmf.data.synthetic import generate_synthetic

    out = {}
    t = time.perf_counter()
    generate_synthetic(root / "raw", seed=0, tile_scale=args.tile_scale, min_tiles=2, tile_size=args.tile_size,
                       dem=dem)
    out["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    tiles = index_tiles(root / "raw")
    out["index"] = time.perf_counter() - t
    t = time.perf_counter()
    write_tinyminifrance(select_subtiles(tiles, args.n_subtiles, 64, 0), root / "raw", root / "tiny", dem=dem)
    out["subsample"] = time.perf_counter() - t
    t = time.perf_counter()
    pack(root / "tiny" / "manifest.csv", root / "tiny" / "packed")
    out["pack"] = time.perf_counter() - t
    out["total"] = sum(out.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile-scale", type=float, default=0.05)
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--n-subtiles", type=int, default=1400)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for dem in (False, True):
            load = os.getloadavg()[0]
            r = stage(Path(tmp) / ("dem" if dem else "rgb"), dem, args)
            print(f"dem={'auto' if dem else 'none'}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.items())
                  + f" (load average {load:.1f} -> {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
