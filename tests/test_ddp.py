"""Data-parallel pretraining on the CPU (gloo, two processes) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from pretrain_toy import ToySimCLR, make_packed, toy_cfg

from tmf.models.resnet import build_backbone
from tmf.ssl import distributed as D
from tmf.ssl.train import pretrain

CFG = dict(steps=3, batch_size=8, log_every=1, checkpoint_every=2, optimizer="sgd", lr=0.02, warmup_steps=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toy64(world: int = 1, rank: int = 0):
    """The toy method in float64 and its two views of a fixed batch of 8 (this rank's rows of it)."""
    torch.manual_seed(0)
    model = ToySimCLR(build_backbone("resnet18")).double()  # fc frozen: every trainable parameter gets a gradient
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(2)]
    b = 8 // world
    return model, [v[rank * b:(rank + 1) * b] for v in views]


def _mm64(world: int = 1, rank: int = 0):
    """MM-SSL (RGB + elevation) in float64 and its views of a fixed batch of 8 (this rank's rows of them)."""
    from tmf.config import validate
    from tmf.ssl.methods import build_method

    torch.manual_seed(0)
    elevation = validate({"elevation": {"encoder": {"widths": [8, 8, 16, 16]}}})["elevation"]
    model = build_method("mm_ssl", build_backbone("resnet18"), {"hidden_dim": 16, "proj_dim": 8},
                         elevation=elevation).double()
    g = torch.Generator().manual_seed(2)
    b = 8 // world
    views = {m: [torch.randn(8, c, 32, 32, generator=g, dtype=torch.float64)[rank * b:(rank + 1) * b]
                 for _ in range(2)] for m, c in (("rgb", 3), ("dem", 1))}
    return model, views


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, port: int, manifest, packed, out, q) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    # 1. the building blocks, on a hand-made batch
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x = torch.arange(6.0).view(3, 2).add(10 * rank).requires_grad_(True)
    full = D.gather(x)
    w = torch.arange(full.numel(), dtype=torch.float32).view_as(full)
    (full * w).sum().backward()  # every rank computes the same global loss
    bn = D.CPUSyncBatchNorm(2)
    y = bn(x.detach())
    # numpy copies: torch tensors cross processes through shared memory that dies with the child
    q.put((rank, *(t.detach().numpy().copy() for t in (full, x.grad, y, bn.running_mean))))
    # 2. one float64 step of the toy method, synchronised batch norm and DDP as in pretrain
    model, views = _toy64(world, rank)
    model = D.convert_sync_batchnorm(model, torch.device("cpu"))
    net = torch.nn.parallel.DistributedDataParallel(model)
    net(views).loss.backward()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(_grads(model), out.parent / "grads64.pt")
    # and of the multi-modal method: views {modality: [...]}, the loss over every modality's global batch
    model, views = _mm64(world, rank)
    model = D.convert_sync_batchnorm(model, torch.device("cpu"))
    net = torch.nn.parallel.DistributedDataParallel(model)  # held: its reducer averages the gradients in backward
    net(views).loss.backward()
    if rank == 0:
        torch.save(_grads(model), out.parent / "mm_grads64.pt")
    # 3. a whole run (pretrain finds the process group running and closes it at the end)
    pretrain(toy_cfg(**CFG, ddp=True, nproc=world), manifest, packed, out, method="toy", seed=0, device="cpu",
             threads=1, method_factory=ToySimCLR)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    manifest, packed, _ = make_packed(tmp / "data")
    one = tmp / "one"
    pretrain(toy_cfg(**CFG), manifest, packed, one, method="toy", seed=0, device="cpu", threads=1,
             method_factory=ToySimCLR)
    two = tmp / "two"
    q = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_worker, args=(2, _free_port(), manifest, packed, two, q), nprocs=2, start_method="spawn")
    blocks = sorted((q.get() for _ in range(2)), key=lambda r: r[0])
    blocks = [(r[0], *(torch.from_numpy(a) for a in r[1:])) for r in blocks]
    return one, two, blocks


def test_cpu_sync_batchnorm_keeps_the_modules_parameters():
    bn = torch.nn.BatchNorm2d(3).double()
    net = D.convert_sync_batchnorm(torch.nn.Sequential(bn), torch.device("cpu"))
    assert isinstance(net[0], D.CPUSyncBatchNorm)
    assert net[0].weight is bn.weight and net[0].running_var is bn.running_var
    assert net[0].weight.dtype == torch.float64


def test_gather_and_sync_batchnorm_two_processes(runs):
    xs = [torch.arange(6.0).view(3, 2) + 10 * r for r in range(2)]
    full = torch.cat(xs)
    w = torch.arange(12.0).view(6, 2)
    ref_bn = torch.nn.BatchNorm2d(2)
    ref_y = ref_bn(full.view(6, 2, 1, 1)).view(6, 2).detach()
    for rank, got_full, grad, y, rm in runs[2]:
        assert torch.equal(got_full, full)
        # d/dx_r of the global loss, summed over the two identical copies: 2·w rows of this rank
        assert torch.equal(grad, 2 * w[3 * rank:3 * rank + 3])
        torch.testing.assert_close(y.view(3, 2), ref_y[3 * rank:3 * rank + 3], atol=1e-5, rtol=0)
        torch.testing.assert_close(rm, ref_bn.running_mean)


def test_two_process_gradient_equals_one_process_in_float64(runs):
    """The exact check of the data-parallel step: in float64 the DDP gradient (gather, synchronised batch norm,
    gradient averaging) equals the single-process gradient of the global batch to rounding."""
    two = runs[1]
    model, views = _toy64()
    model(views).loss.backward()
    one, dist_grads = _grads(model), torch.load(two.parent / "grads64.pt")
    assert one.keys() == dist_grads.keys()
    scale = max(g.abs().max() for g in one.values())
    for k in one:
        torch.testing.assert_close(dist_grads[k], one[k], rtol=1e-9, atol=1e-12 * scale, msg=k)


def test_two_process_multimodal_gradient_equals_one_process(runs):
    model, views = _mm64()
    model(views).loss.backward()
    one, dist_grads = _grads(model), torch.load(runs[1].parent / "mm_grads64.pt")
    assert one.keys() == dist_grads.keys() and any(k.startswith("others.dem.") for k in one)
    scale = max(g.abs().max() for g in one.values())
    for k in one:
        torch.testing.assert_close(dist_grads[k], one[k], rtol=1e-9, atol=1e-12 * scale, msg=k)


def test_two_process_loss_curve_matches_one_process(runs):
    one, two, _ = runs
    h1, h2 = pd.read_csv(one / "history.csv"), pd.read_csv(two / "history.csv")
    assert h2["step"].tolist() == [1, 2, 3]
    # Steps 1–2 check the forward and the first float32 update tightly. In float32 the two gradients differ by
    # rounding (~1e-5 relative, the float64 test above shows they are otherwise equal), which this toy amplifies
    # (8 images, batch norm over 1×1 maps): step 3 differed by 0.3–0.8 % on our machines, so it is only checked
    # to stay on the same curve.
    assert h1["loss"].tolist()[:2] == pytest.approx(h2["loss"].tolist()[:2], rel=1e-4)
    assert h1["loss"].tolist() == pytest.approx(h2["loss"].tolist(), rel=3e-2)
    a = torch.load(one / "encoder.pt")["state_dict"]
    b = torch.load(two / "encoder.pt")["state_dict"]
    assert a.keys() == b.keys()
    assert sorted(p.name for p in two.iterdir()) == ["checkpoint.pt", "encoder.pt", "history.csv", "metrics.json"]
    m2 = json.loads((two / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m2["batch_size"] == 8
