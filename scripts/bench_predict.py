"""Predict the map of one MiniFrance-sized tile (10,000 px) and print the peak memory next to the tile and window size.

Writes a synthetic RGB tile of ``--size`` px (JPEG in 256 px blocks, as BD ORTHO ships; written block row by block
row, in a child process) to a temporary folder, saves a randomly initialised model in the evaluation stage's
format (``--model unet``: the ResNet-18 U-Net of the finetune protocol with the schema's decoder widths;
``--model conv``: two 5x5 convolutions, to see the stage's own memory without the network's), then runs
``tmf.predict.geotiff.predict_geotiff`` on it: first on a small tile (warm-up), then on the big one. Prints the
peak RSS of this process before and after the big tile, the floats the sliding window held (its own count), the
floats a whole-tile accumulator would need, the time and the throughput. Not a test: timings depend on the machine
(say its load).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_predict.py [--size 10000] [--window 512] [--overlap 128]
        [--batch 4] [--model unet|conv] [--device cpu|cuda] [--threads 1]
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

import rasterio
import torch
from bench_index import (
    write_tile,  # the BD ORTHO-like JPEG tile of the index benchmark (scripts/ is on sys.path)
)

from tmf.data.minifrance import SCORED_IDS
from tmf.device import configure, resolve_device
from tmf.evaluate.saved_model import Predictor, build, load_predictor, save_model
from tmf.predict.geotiff import predict_geotiff


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, padding=2), torch.nn.ReLU(),
                                       torch.nn.Conv2d(16, len(SCORED_IDS), 5, padding=2))

    def forward(self, x):
        return self.net(x)


def make_predictor(kind: str, folder: Path, device: torch.device) -> Predictor:
    torch.manual_seed(0)
    if kind == "conv":
        return Predictor(ConvNet().to(device).eval(), device, SCORED_IDS, {"protocol": "bench", "method": "conv",
                                                                           "fraction": 1.0, "seed": 0}, {})
    arch = {"kind": "unet", "backbone": "resnet18", "decoder_channels": [256, 128, 64, 32, 16], "head": "conv",
            "head_dim": None, "aux_channels": 0}
    path = folder / "model.pt"
    save_model(path, build(arch).eval(), arch, {"protocol": "finetune", "method": "bench", "fraction": 1.0, "seed": 0})
    return load_predictor(path, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--model", choices=["unet", "conv"], default="unet")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    device = resolve_device(args.device)
    configure(device, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, small = tmp / "big.tif", tmp / "small.tif"
        t0 = time.perf_counter()
        for path, size in ((big, args.size), (small, 300)):  # in a child: this process's peak is the prediction's
            child = multiprocessing.get_context("fork").Process(target=write_tile, args=(path, size, 3, 0),
                                                               kwargs={"compress": "JPEG"})
            child.start()
            child.join()
        print(f"wrote a {args.size} px RGB tile ({big.stat().st_size / 1e6:.0f} MB, JPEG) in "
              f"{time.perf_counter() - t0:.1f} s")
        predictor = make_predictor(args.model, tmp, device)
        opts = {"window": args.window, "overlap": args.overlap, "batch": args.batch}
        predict_geotiff(small, tmp / "small_map.tif", predictor, **opts)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        stats, counts = predict_geotiff(big, tmp / "map.tif", predictor, **opts)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with rasterio.open(tmp / "map.tif") as m:
            assert (m.height, m.width) == (args.size, args.size) and counts.sum() == args.size**2
            map_mb = (tmp / "map.tif").stat().st_size / 1e6
    n = len(SCORED_IDS)
    whole = n * args.size**2
    print(f"tile {args.size} x {args.size} px, window {args.window} px, overlap {args.overlap} px, batch "
          f"{args.batch}, model {args.model}, {device}, {args.threads} thread(s): {stats.windows} windows in "
          f"{stats.seconds:.1f} s ({args.size**2 / stats.seconds / 1e6:.2f} Mpx/s of map), map {map_mb:.1f} MB")
    print(f"floats held by the sliding window (its count): {stats.peak_floats / 1e6:.1f} M = "
          f"{stats.peak_floats * 4 / 2**20:.0f} MiB; a whole-tile accumulator: {whole / 1e6:.0f} M = "
          f"{whole * 4 / 2**20:.0f} MiB")
    print(f"peak RSS: {before:.0f} MiB after the warm-up, {after:.0f} MiB after the {args.size} px tile "
          f"(+{after - before:.0f} MiB)")
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
