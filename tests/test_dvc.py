"""DVC versioning: which paths are tracked, that `dvc add` leaves the workflow's outputs untouched, that a fresh
clone regenerates exactly the committed data.dvc, and the round trip run → push → clone → pull → nothing to do.

The fast tests build small DVC repositories in tmp_path; the slow ones run the real workflow in a fresh git clone
of this working tree (the data stage with the embedded default parameters; the whole workflow with the tiny test
configuration)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tmf import versioning
from tmf.cli import main

try:
    from .conftest import BIN, REPO, copy_repo, snakemake
except ImportError:  # tests/ run as rootdir-relative modules (no tests/__init__.py)
    from conftest import BIN, REPO, copy_repo, snakemake

GIT_ENV = {"GIT_AUTHOR_NAME": "tmf test", "GIT_AUTHOR_EMAIL": "test@localhost", "GIT_COMMITTER_NAME": "tmf test",
           "GIT_COMMITTER_EMAIL": "test@localhost"}
DATA_TARGETS = ["data/tinyminifrance/packed/images.npy", "data/tinyminifrance/packed/labels.npy",
                "data/tinyminifrance/class_shares.csv"]


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, str(BIN / "dvc"), *args, check=check)


def git_repo(path: Path) -> Path:
    """Make ``path`` a git repository with everything in it committed (what a clone of the project holds)."""
    run(path, "git", "init", "-q", "-b", "main")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-q", "-m", "snapshot")
    return path


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------------------
# Small repositories


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A git + DVC repository with this project's ignore files and a few workflow-like outputs."""
    repo = tmp_path / "mini"
    for rel in (".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore", "results/.gitignore",
                "reports/.gitignore", "results/.gitkeep", "reports/.gitkeep"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, repo / rel)
    git_repo(repo)
    files = {"data/raw/t1.tif": "a", "data/tiles.csv": "b", "results/pretrain/simclr/seed0/encoder.pt": "w",
             "results/pretrain/simclr/seed0/checkpoint.pt": "resume-only", "results/evaluate/summary.csv": "s",
             "results/mlflow/notes.txt": "never versioned", "reports/index.html": "<html>", "reports/notebooks/data.html": "d"}
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    return repo


def test_targets_are_data_and_each_results_and_reports_entry(mini: Path):
    (mini / "results/pretrain.dvc").write_text("outs: []\n")
    assert versioning.dvc_targets(mini) == ["data", "results/evaluate", "results/pretrain", "reports/index.html",
                                            "reports/notebooks"]


def test_dvc_track_versions_without_touching_outputs(mini: Path):
    before = mtimes(mini / "data") | mtimes(mini / "results") | mtimes(mini / "reports")
    pointers = versioning.dvc_track(mini)
    assert set(pointers) == {"data.dvc", "results/evaluate.dvc", "results/pretrain.dvc", "reports/index.html.dvc",
                             "reports/notebooks.dvc"}
    after = mtimes(mini / "data") | mtimes(mini / "results") | mtimes(mini / "reports")
    assert {k: v for k, v in after.items() if not k.endswith(".dvc")} == before  # Snakemake sees nothing new

    pre = versioning.read_pointer(mini / "results/pretrain.dvc")
    assert pre["nfiles"] == 1  # encoder.pt; the resume checkpoint is .dvcignore'd
    assert pointers["data.dvc"] == versioning.read_pointer(mini / "data.dvc")["md5"]
    # git sees the pointers (and nothing else of the outputs); DVC finds them all (none hidden by .gitignore)
    status = run(mini, "git", "status", "--porcelain", "--untracked-files=all").stdout.split("\n")
    assert sorted(line[3:] for line in status if line) == sorted(pointers)
    listed = json.loads(dvc(mini, "data", "status", "--json").stdout)
    assert sorted(listed["committed"]["added"]) == ["data/", "reports/index.html", "reports/notebooks/",
                                                    "results/evaluate/", "results/pretrain/"]  # not yet in git
    assert not listed.get("uncommitted") and not listed.get("not_in_cache")
    assert "Data and pipelines are up to date" in dvc(mini, "status").stdout
    # a changed output is seen by DVC through its pointer
    (mini / "results/pretrain/simclr/seed0/encoder.pt").write_text("other weights")
    assert "results/pretrain.dvc" in dvc(mini, "status").stdout


def test_dvc_track_outside_git_and_outside_dvc(tmp_path: Path, mini: Path, capsys):
    plain = tmp_path / "copy"
    shutil.copytree(mini, plain, ignore=shutil.ignore_patterns(".git"))
    ignores = {p: p.read_text() for p in plain.rglob(".gitignore")}
    assert set(versioning.dvc_track(plain, ["data", "results/pretrain"])) == {"data.dvc", "results/pretrain.dvc"}
    assert {p: p.read_text() for p in plain.rglob(".gitignore")} == ignores  # no git: DVC without SCM

    bare = tmp_path / "bare"
    (bare / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="not a DVC repository"):
        versioning.dvc_track(bare)
    with pytest.raises(FileNotFoundError, match="nothing to version at results/nope"):
        versioning.dvc_track(plain, ["results/nope"])
    assert main(["dvc-track", "--root", str(bare), "--cfg", '{"enabled": false}']) == 2
    assert "not a DVC repository" in capsys.readouterr().err


# What a killed atomic writer leaves: the notebook writer (tmf.report.notebook) killed while papermill ran.
KILLED_WRITER = """
import os, signal, sys
from tmf.io import atomic_path
with atomic_path(sys.argv[1], suffix=".ipynb") as tmp:
    tmp.write_text('{"cells": []}')
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_leftovers_of_killed_jobs_are_never_versioned(mini: Path, caplog):
    import sys

    from tmf.io import TEMP_MARKER

    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(mini / "reports/notebooks/data.ipynb")])
    assert proc.returncode == -9
    (leftover,) = [p for p in (mini / "reports/notebooks").iterdir() if TEMP_MARKER in p.name]
    (mini / "data/raw/archive.tar.part").write_text("half a download")
    assert versioning.leftovers(mini, versioning.dvc_targets(mini)) == sorted([leftover,
                                                                              mini / "data/raw/archive.tar.part"])
    with caplog.at_level("WARNING"):
        pointers = versioning.dvc_track(mini)
    assert "reports/notebooks/" + leftover.name in caplog.text and "data/raw/archive.tar.part" in caplog.text
    assert versioning.read_pointer(mini / "reports/notebooks.dvc")["nfiles"] == 1  # data.html only
    assert versioning.read_pointer(mini / "data.dvc")["nfiles"] == 2  # raw/t1.tif, tiles.csv
    assert set(pointers) >= {"reports/notebooks.dvc", "data.dvc"}
    assert leftover.exists()  # reported, not deleted: the user decides

    # a project whose .dvcignore does not leave them out: refused, naming the files, nothing versioned
    (mini / ".dvcignore").write_text("checkpoint.pt\n")
    (mini / "reports/notebooks.dvc").unlink()
    with pytest.raises(ValueError, match=r"killed jobs left behind: .*" + leftover.name.replace(".", r"\.")):
        versioning.dvc_track(mini, ["reports/notebooks"])
    assert not (mini / "reports/notebooks.dvc").exists()


def test_dvc_track_attaches_pointers_to_the_parent_run(mini: Path, monkeypatch, tmp_path: Path):
    from mlflow.tracking import MlflowClient

    from tmf import tracking

    monkeypatch.chdir(mini)
    cfg = {"enabled": True, "uri": f"sqlite:///{tmp_path}/store/mlflow.db", "experiment": "dvc-test", "dvc": True}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    parent = tracking.start_parent(cfg, {"a": 1})
    out = mini / "results/mlflow/tracked.json"
    assert main(["dvc-track", "--cfg", json.dumps(cfg), "--out", str(out)]) == 0
    pointers = json.loads(out.read_text())
    client = MlflowClient(tracking.tracking_uri(cfg))
    run = client.get_run(parent)
    assert run.data.tags["tmf.data_version"] == pointers["data.dvc"]
    logged = {a.path for a in client.list_artifacts(parent, "dvc")}
    assert logged == {"dvc/data.dvc", "dvc/results", "dvc/reports"}
    assert {a.path for a in client.list_artifacts(parent, "dvc/results")} == {"dvc/results/evaluate.dvc",
                                                                                "dvc/results/pretrain.dvc"}


# ------------------------------------------------------------------------------------------------------------
# The real workflow, in a fresh clone


TINY = "tests/configs/tiny.yaml"
# Fewer jobs than the tiny configuration (one of each kind is enough for the round trip); lists replace lists.
SMALLER = """\
appearance: {encoders: [random-resnet18], seeds: [0]}
pretrain: {methods: [simclr], seeds: [0]}
evaluate: {protocols: [linear], baselines: [random], fractions: [1.0], probe_fractions: [1.0], seeds: [0]}
"""


def tiny_config(repo: Path, tmp_path: Path) -> list[str]:
    """The tiny test configuration with fewer jobs (the overlay lives outside the repository)."""
    assert (repo / TINY).exists(), f"{TINY} is missing"
    overlay = tmp_path / "smaller.yaml"
    overlay.write_text(SMALLER)
    return ["--configfile", TINY, str(overlay)]


def tracking_off(tmp_path: Path) -> str:
    """A config file, outside the repository, that switches MLflow tracking off (given after the others)."""
    path = tmp_path / "tracking_off.yaml"
    path.write_text("tracking:\n  enabled: false\n")
    return str(path)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh git clone of this working tree (its tracked and untracked, not ignored, files)."""
    origin = git_repo(copy_repo(tmp_path / "origin"))
    text = (origin / "Snakefile").read_text()
    assert "workflow/rules/dvc.smk" in text and "workflow/rules/tracking.smk" in text, \
        "the Snakefile must include workflow/rules/tracking.smk and workflow/rules/dvc.smk"
    return origin


@pytest.mark.slow
def test_fresh_run_reproduces_the_committed_data_dvc(clone: Path, tmp_path: Path):
    """data.dvc in the repository is the embedded default's data: regenerating it from scratch (default
    parameters, deterministic generation and subsampling) leaves `dvc status data.dvc` clean."""
    assert (clone / "data.dvc").exists(), "data.dvc is not committed: run scripts/update_data_dvc.sh"
    assert not (clone / "data").exists()
    committed = (clone / "data.dvc").read_text()
    snakemake(clone, "--cores", "2", "--configfile", tracking_off(tmp_path), "--", *DATA_TARGETS)
    # what the workflow's last step does with data/ (a fresh clone's DVC cache is empty: `dvc status` alone would
    # only say "not in cache")
    run(clone, str(BIN / "tmf"), "dvc-track", "--targets", "data", "--cfg", '{"enabled": false}')
    assert run(clone, "git", "diff", "--", "data.dvc").stdout == "", "the embedded default's data changed: " \
        "if on purpose, run scripts/update_data_dvc.sh and commit data.dvc"
    assert (clone / "data.dvc").read_text() == committed
    status = dvc(clone, "status", "data.dvc").stdout
    assert "Data and pipelines are up to date" in status, status


@pytest.mark.slow
def test_round_trip_push_clone_pull_nothing_to_do(clone: Path, tmp_path: Path):
    """Run the workflow (MLflow on), commit the pointers, push to a fresh remote; clone afresh, pull, touch in DAG
    order: the dry run has nothing to do and DVC and git are clean. MLflow holds one parent run, FINISHED, with one
    child run per tracked job."""
    from mlflow.tracking import MlflowClient

    cfg = tiny_config(clone, tmp_path)
    proc = snakemake(clone, "--cores", "2", *cfg)
    steps = re.findall(r"(\d+) of \1 steps \(100%\) done", proc.stdout + proc.stderr)
    assert steps, proc.stderr[-3000:]
    n_jobs = int(steps[-1]) - 1  # every job but `all` runs one tmf command
    pointers = sorted(str(p.relative_to(clone)) for p in
                      [clone / "data.dvc", *(clone / "results").glob("*.dvc"), *(clone / "reports").glob("*.dvc")])
    assert "data.dvc" in pointers and "results/pretrain.dvc" in pointers, pointers
    assert not (clone / "results/mlflow.dvc").exists()

    # MLflow: one parent for this invocation, finished, its children nested under it
    client = MlflowClient(f"sqlite:///{clone}/results/mlflow/mlflow.db")
    exp = client.get_experiment_by_name(yaml.safe_load((clone / TINY).read_text())
                                        .get("tracking", {}).get("experiment", "tmf"))
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("tmf.workflow") == "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    children = [r for r in runs if r is not parents[0]]
    assert len(children) == n_jobs, sorted(r.info.run_name for r in children)  # one child run per job
    assert all(r.data.tags.get("mlflow.parentRunId") == parent for r in children)
    assert all(r.info.status == "FINISHED" for r in children)
    names = {r.info.run_name for r in children}
    assert "dvc-track" in names and any(n.startswith("pretrain[method=") for n in names), names
    assert parents[0].data.tags["tmf.data_version"] == versioning.read_pointer(clone / "data.dvc")["md5"]

    remote = tmp_path / "remote"
    dvc(clone, "remote", "modify", "local", "url", str(remote))
    run(clone, "git", "add", ".dvc/config", *pointers)
    run(clone, "git", "commit", "-q", "-m", "version the workflow's outputs")
    dvc(clone, "push")
    assert run(clone, "git", "status", "--porcelain").stdout == ""

    other = tmp_path / "elsewhere"
    run(tmp_path, "git", "clone", "-q", str(clone), str(other))
    dvc(other, "pull")
    snakemake(other, "--touch", "--cores", "1", *cfg)  # pulled files get DAG-ordered modification times
    dry = snakemake(other, "-n", "--cores", "2", *cfg)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    dry = snakemake(other, "-n", "--cores", "2", *cfg, tracking_off(tmp_path))
    assert "Nothing to be done" in dry.stdout + dry.stderr, "switching tracking off must re-run nothing"
    assert "Data and pipelines are up to date" in dvc(other, "status").stdout
    assert run(other, "git", "status", "--porcelain").stdout == ""
    for p in pointers:
        out = other / p[: -len(".dvc")]
        assert out.exists(), out
    assert (other / "results/pretrain").is_dir() and (other / "reports/index.html").is_file()
