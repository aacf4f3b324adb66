"""Shared fixtures: a fresh copy of the repository (what a clone holds) to run the workflow in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a fresh clone of this working tree would hold."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                         capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).exists()]


def copy_repo(dest: Path) -> Path:
    for rel in repo_files():
        src = REPO / rel
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


def copy_run(run: Path, dest: Path) -> Path:
    """``cp -a`` of a finished run, as a user copies a project: the modification times come along (so Snakemake
    sees the same outputs up to date), and so does the MLflow store."""
    subprocess.run(["cp", "-a", str(run), str(dest)], check=True)
    return dest


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh copy of the repository in a temporary folder."""
    return copy_repo(tmp_path / "repo")


# The embedded workflow at its smallest (tests/configs/tiny.yaml). Targets go before these: --configfile and
# --config take every word after them.
TINY = ["--configfile", "tests/configs/tiny.yaml"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished run of the whole workflow on the tiny configuration in a fresh copy of the repository,
    shared by the end-to-end modules (a few minutes on 2 cores). Tests that change it work on a copy."""
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    snakemake(repo, "--cores", "2", *TINY)
    return repo


def snakemake(cwd: Path, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc
