"""Time `tmf index` on MiniFrance-sized tiles: every block of a 10,000 px image and its label decoded (SPEC.md §1).

Writes ``--tiles`` tiles of ``--size`` px (RGB JPEG-compressed in 256 px blocks, as BD ORTHO ships, plus a
deflate label), written window by window, into a temporary folder in the MiniFrance layout; then runs
``index_tiles`` with 1 and ``--workers`` processes. Prints the seconds, the MB/s decoded and the peak RSS of
this process and of the workers next to the tile size. Not a test: timings depend on the machine (say its load).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_index.py [--size 10000] [--tiles 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from tmf.data.reader import index_tiles


def write_tile(path: Path, size: int, bands: int, seed: int, **opts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", height=size, width=size, count=bands, dtype="uint8", crs="EPSG:2154",
                transform=Affine(0.5, 0, 1040000.0, 0, -0.5, 6300000.0), tiled=True, blockxsize=256,
                blockysize=256, **opts)
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **prof) as dst:
        for r0 in range(0, size, 1024):
            h = min(1024, size - r0)
            yy = np.arange(r0, r0 + h)[:, None]
            xx = np.arange(size)[None, :]
            field = ((yy // 97 + xx // 131) % 14 + 1).astype(np.uint8)
            if bands == 1:
                block = field[None]
            else:
                block = (field[None] * np.array([9, 13, 17])[:, None, None] + rng.integers(0, 30, (3, h, size)))
            dst.write(block.astype(np.uint8), window=Window(0, r0, size, h))


def write_tiles(root: Path, size: int, n: int) -> None:
    for k in range(n):
        stem = f"06-2014-{1040 + k:04d}-6300-LA93-0M50-E080"
        write_tile(root / "labeled" / "Nice" / "BDORTHO" / f"{stem}.tif", size, 3, k, compress="JPEG")
        write_tile(root / "labeled" / "Nice" / "UrbanAtlas" / f"{stem}_UA2012.tif", size, 1, k, compress="deflate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        writer = multiprocessing.get_context("fork").Process(target=write_tiles, args=(root, args.size, args.tiles))
        writer.start()  # in a child, so that this process's peak RSS is the index's alone
        writer.join()
        size_mb = sum(p.stat().st_size for p in root.rglob("*.tif")) / 1e6
        print(f"wrote {args.tiles} tiles of {args.size} px ({size_mb:.0f} MB on disk) in "
              f"{time.perf_counter() - t0:.1f} s")
        decoded = args.tiles * args.size**2 * 4 / 1e6  # 3 image bands + 1 label band, bytes
        for workers in sorted({1, args.workers}):
            t0 = time.perf_counter()
            df = index_tiles(root, workers=workers)
            dt = time.perf_counter() - t0
            print(f"index_tiles, {workers} worker(s): {dt:.1f} s for {len(df)} tiles ({dt / len(df):.1f} s per "
                  f"{args.size} px tile, {decoded / dt:.0f} MB/s decoded)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: {own:.0f} MiB (this process: the 1-worker index), {kids:.0f} MiB (largest child: the "
          f"tile writer or a worker) for {args.size} px tiles")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
