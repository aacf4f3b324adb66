#!/usr/bin/env python3
"""Cost of the training-data fingerprint a pretraining checkpoint records (tmf.data.packed.Packed.fingerprint).

Writes a packed tinyMiniFrance of ``--gb`` GB of images (random bytes, a valid manifest and zero labels) to a
temporary folder, hashes it as a pretraining job does at its start (the manifest and images.npy, streamed), and
prints the rate and what that means for the real study's 3,500 sub-tiles of 1,000² px (10.5 GB of images).
The first pass may read from disk, the second from the page cache (as a job that has just been given the files).

    python scripts/bench_fingerprint.py --gb 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tmf.data.packed import COUNT_COLUMNS, open_packed  # noqa: E402

REAL_GB = 3500 * 1000 * 1000 * 3 / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0, help="size of images.npy to hash")
    ap.add_argument("--size", type=int, default=256, help="sub-tile side in px")
    args = ap.parse_args(argv)
    n = max(1, int(args.gb * 1e9 / (args.size * args.size * 3)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "packed").mkdir()
        img = np.lib.format.open_memmap(root / "packed" / "images.npy", mode="w+", dtype=np.uint8,
                                        shape=(n, args.size, args.size, 3))
        rng = np.random.default_rng(0)
        for i in range(n):
            img[i] = rng.integers(0, 256, img.shape[1:], dtype=np.uint8)
        img.flush()
        del img
        np.save(root / "packed" / "labels.npy", np.zeros((n, args.size, args.size), np.uint8))
        pd.DataFrame({"id": [f"Nice__t__r0_c{i}" for i in range(n)], "city": "Nice", "split": "labeled",
                      "tile": "t", "row_off": 0, "col_off": 0, "height": args.size, "width": args.size, "image": "",
                      "label": "", "has_label": 0, **dict.fromkeys(COUNT_COLUMNS, 0)}).to_csv(root / "manifest.csv",
                                                                                            index=False)
        packed = open_packed(root / "manifest.csv", root / "packed")
        gb = (root / "packed" / "images.npy").stat().st_size / 1e9
        for attempt in ("first", "second"):
            t0 = time.perf_counter()
            packed.fingerprint(("images",))
            s = time.perf_counter() - t0
            print(f"{attempt} pass: {gb:.2f} GB in {s:.2f} s = {gb / s:.2f} GB/s; the real study's {REAL_GB:.1f} GB "
                  f"would take about {REAL_GB / (gb / s):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
