"""A run killed at any stage, then the README's recovery ("If a run is killed": `snakemake --unlock`, then the
same command again), ends with outputs identical to an uninterrupted run (issue 12).

Each test copies the shared finished tiny run (tests/conftest.py `tiny_run`), kills Snakemake and its job with
SIGKILL (a crash, not a clean stop) while a job of one stage runs, checks that Snakemake then refuses to run
(its lock), recovers as the README says and compares the outputs with the uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import TINY, copy_run, snakemake

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def kill_mid_job(repo: Path, command: str, args: list[str], ready: Callable[[], bool], timeout: float = 600) -> None:
    """Run ``snakemake *args`` in ``repo``; once its job ``tmf <command>`` runs and ``ready()`` holds, SIGKILL
    Snakemake and every job it started. Fails if the job ended first."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(BIN / "snakemake"), *args], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    token = re.compile(rf"\btmf {command}\b")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"snakemake ended before its `tmf {command}` job could be killed"
            try:
                jobs = [p for p in psutil.Process(proc.pid).children(recursive=True)
                        if token.search(" ".join(p.cmdline()))]
            except psutil.Error:  # a process ended while we looked
                jobs = []
            if jobs and ready():
                return
            time.sleep(0.01)
        raise AssertionError(f"`tmf {command}` did not reach the point to kill it within {timeout} s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def recover(repo: Path, *args: str) -> None:
    """The README's recovery: the next run is refused while the killed run's lock stays; unlock, run again."""
    refused = snakemake(repo, "--cores", "2", *args, check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    snakemake(repo, "--unlock", *args)  # as a user types it: no --cores
    snakemake(repo, "--cores", "2", *args)


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def without_timing(metrics: dict) -> dict:
    """metrics.json but its wall-clock figures (seconds, images/s, crops/s), which no two runs share."""
    return {k: without_timing(v) if isinstance(v, dict) else v for k, v in metrics.items()
            if k not in ("seconds", "images_per_s", "crops_per_s")}


def test_killed_subsampling(tiny_run: Path, tmp_path: Path):
    repo = copy_run(tiny_run, tmp_path / "killed")
    tiny = repo / "data/tinyminifrance"
    target = ["data/tinyminifrance/packed/images.npy", *TINY]

    def some_crops_written() -> bool:  # the job is writing its crops; the manifest comes last
        return any(tiny.glob("*/*/BDORTHO/*.tif")) and not (tiny / "manifest.csv").exists()

    kill_mid_job(repo, "subsample", [*target[:1], "--cores", "1", "--forcerun", "subsample", *TINY],
                 some_crops_written)
    assert not (tiny / "manifest.csv").exists()
    recover(repo, *target)
    assert checksums(tiny) == checksums(tiny_run / "data/tinyminifrance")


def test_killed_evaluation(tiny_run: Path, tmp_path: Path):
    repo = copy_run(tiny_run, tmp_path / "killed")
    out = "results/evaluate/finetune/random/frac1/seed0"
    kill_mid_job(repo, "evaluate", [f"{out}/metrics.json", "--cores", "1", "--forcerun", "evaluate", *TINY],
                 lambda: True)
    assert not (repo / out / "metrics.json").exists()
    recover(repo, f"{out}/metrics.json", *TINY)
    new, old = (without_timing(json.loads((r / out / "metrics.json").read_text())) for r in (repo, tiny_run))
    assert new == old
    assert (repo / out / "predictions.png").read_bytes() == (tiny_run / out / "predictions.png").read_bytes()


def progress_steps(log: str) -> list[int]:
    """The steps of a pretraining log's progress lines (step, loss, lr, images/s, time left)."""
    return [int(m) for m in re.findall(r"step (\d+)/\d+ \(\d+%\): loss \S+, lr \S+, \S+ images/s, about \S+ left", log)]


def test_killed_pretraining_resumes_and_ends_as_an_uninterrupted_run(tiny_run: Path, tmp_path: Path):
    """Killed after a checkpoint, the pretraining job resumes from it when the workflow runs again: the loss curve
    continues instead of restarting, and the encoder equals an uninterrupted run's, bit for bit. While the job runs
    its log shows a progress line every log_every steps; the killed invocation's MLflow runs are marked FAILED."""
    import torch
    from mlflow.tracking import MlflowClient

    from tmf.ssl.checkpoint import read_checkpoint

    target = "results/pretrain/simclr/seed0/encoder.pt"
    longer = ["--config", "pretrain={steps: 60, checkpoint_every: 10, log_every: 10}"]
    clean = copy_run(tiny_run, tmp_path / "uninterrupted")
    snakemake(clean, target, "--cores", "1", *TINY, *longer)
    repo = copy_run(tiny_run, tmp_path / "killed")
    ckpt = repo / "results/pretrain/simclr/seed0/checkpoint.pt"
    before = ckpt.stat().st_mtime if ckpt.exists() else 0.0
    seen = {}

    def checkpoint_of_the_longer_run() -> bool:
        if not (ckpt.exists() and ckpt.stat().st_mtime > before):
            return False
        time.sleep(0.2)  # let the atomic rename finish
        if read_checkpoint(ckpt)["step"] < 10:
            return False
        seen["running"] = progress_steps((repo / "logs/pretrain/simclr/seed0.log").read_text())
        return True

    kill_mid_job(repo, "pretrain", [target, "--cores", "1", *TINY, *longer], checkpoint_of_the_longer_run)
    running = seen["running"]
    assert running and running[0] == 10 and all(k % 10 == 0 for k in running), running
    killed_at = read_checkpoint(ckpt)["step"]
    assert killed_at < 60
    recover(repo, target, *TINY, *longer)
    log = (repo / "logs/pretrain/simclr/seed0.log").read_text()
    assert "resumed from" in log and f"at step {killed_at} of 60" in log, log
    assert progress_steps(log) == list(range(killed_at + 10, 61, 10)), log
    steps = [int(s) for s in (repo / "results/pretrain/simclr/seed0/history.csv").read_text().split()[1:]
             for s in [s.split(",")[0]]]
    assert steps == sorted(set(steps)) and steps[-1] == 60, steps  # one continuous curve, no restart
    a, b = (torch.load(r / target, map_location="cpu", weights_only=True)["state_dict"] for r in (repo, clean))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    client = MlflowClient(f"sqlite:///{repo}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("tmf").experiment_id
    assert client.search_runs([exp], "attributes.status = 'RUNNING'") == []
    failed = client.search_runs([exp], "attributes.status = 'FAILED'")
    assert "pretrain[method=simclr,seed=0]" in {r.info.run_name for r in failed}
    assert any(r.data.tags.get("tmf.workflow") == "true" for r in failed)
