"""On a machine with torchvision: check that the appearance encoders match torchvision exactly.

For resnet34 and vgg16: torchvision's randomly initialised model's state dict is saved under torchvision's hub
file name, loaded by ``tmf.appearance.features.load_encoder("imagenet-<arch>")`` (strict keys and shapes), and the
pooled features of ``encode_images`` are compared with torchvision's own forward pass (ResNet: the input of ``fc``;
VGG: the global average of ``features``). Also times the encoding on the available device (CUDA: bf16 autocast,
channels_last). Needs only torch, torchvision and numpy:

    PYTHONPATH=src python3 scripts/check_torchvision_appearance.py
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch
import torchvision

from tmf.appearance.features import IMAGENET_FILES, encode_images, load_encoder
from tmf.models.resnet import normalise_uint8


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as home:
        os.environ["TORCH_HOME"] = home
        ckpt = os.path.join(home, "hub", "checkpoints")
        os.makedirs(ckpt)
        for arch in ("resnet34", "vgg16"):
            torch.manual_seed(0)
            ref = getattr(torchvision.models, arch)(weights=None).eval()
            torch.save(ref.state_dict(), os.path.join(ckpt, IMAGENET_FILES[arch]))
            ours = load_encoder(f"imagenet-{arch}")
            assert list(ours.state_dict()) == list(ref.state_dict()), f"{arch}: key order differs"
            x = normalise_uint8(torch.from_numpy(images[:8]))
            with torch.no_grad():
                if arch.startswith("resnet"):
                    ref.fc = torch.nn.Identity()
                    want = ref(x)
                else:
                    want = ref.features(x).mean(dim=(2, 3))
            got = encode_images(ours, images[:8], "last", 8, 0, "cpu")
            err = float(np.abs(got - want.numpy()).max() / np.abs(want.numpy()).max())
            print(f"{arch}: keys identical, CPU features vs torchvision: max relative error {err:.2e}")
            assert err < 1e-5
            model = load_encoder(f"imagenet-{arch}")
            encode_images(model, images[:16], "last", 16, 0, device)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            feats = encode_images(model, images, "last", 64, 0, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            cpu = encode_images(load_encoder(f"imagenet-{arch}"), images[:8], "last", 8, 0, "cpu")
            rel = float(np.abs(feats[:8] - cpu).max() / np.abs(cpu).max())
            print(f"{arch}: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}) "
                  f"{len(images) / dt:.0f} images/s at 224 px, batch 64; vs CPU float32: max rel. error {rel:.1e}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: OK")


if __name__ == "__main__":
    main()
