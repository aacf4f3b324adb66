"""DVC versioning of the workflow's data and results (``tmf dvc-track``, the workflow's last, serial step).

What is tracked, one DVC pointer each (committed to git; the files themselves go to the DVC cache and remote):

* ``data.dvc`` → ``data/`` (raw or generated tiles, the tile index, tinyMiniFrance and its packed arrays);
* ``results/<entry>.dvc`` → every entry of ``results/`` (``pretrain/``: the trained encoders, ``evaluate/``:
  the evaluation models and scores, ``appearance/``...) except ``mlflow/`` (the tracking store, which changes
  with every invocation) and hidden files;
* ``reports/<entry>.dvc`` → every entry of ``reports/`` (the HTML report), so that a clone that pulls has every
  output of the workflow and Snakemake has nothing left to do.

``results/`` and ``reports/`` are git-ignored by their own ``.gitignore`` (``/*``, ``!/*.dvc``), not by a
``/results/*`` line at the top: DVC does not look for pointers inside folders that git reports as ignored.
``.dvcignore`` leaves out the training checkpoints (``checkpoint.pt``) and what killed jobs leave behind: the
temporaries of ``tmf.io.atomic_path`` (names holding ``tmf.io.TEMP_MARKER``) and partial downloads (``*.part``).
``tmf dvc-track`` lists such leftovers, and refuses to run if ``.dvcignore`` would let DVC version one.

DVC takes a repository lock, so this must never run from parallel jobs: the workflow calls it once, from a local
rule that waits for every other job. ``dvc add`` reads the files and leaves them untouched (``relink=False``: not
even their modification times change), so the workflow's outputs stay up to date for Snakemake.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

#: entries of results/ that are never versioned by DVC
UNTRACKED_RESULTS = frozenset({"mlflow"})


def is_leftover(name: str) -> bool:
    """A file name that only a killed job leaves behind: an atomic writer's temporary, a partial download."""
    from tmf.io import TEMP_MARKER

    return TEMP_MARKER in name or name.endswith(".part")


def leftovers(root: str | Path, targets: Sequence[str]) -> list[Path]:
    """The leftovers of killed jobs (:func:`is_leftover`) in the targets (under ``root``)."""
    found = []
    for t in targets:
        p = Path(root) / t
        files = [p] if p.is_file() else (q for q in p.rglob("*") if q.is_file() or q.is_symlink())
        found += [q for q in files if is_leftover(q.name)]
    return sorted(found)


def dvc_targets(root: str | Path = ".") -> list[str]:
    """The paths to version, relative to ``root``: ``data`` and each entry of ``results/`` and ``reports/``."""
    root = Path(root)
    targets = ["data"] if (root / "data").is_dir() else []
    for top in ("results", "reports"):
        folder = root / top
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or entry.suffix == ".dvc" or entry.name in UNTRACKED_RESULTS:
                continue
            targets.append(f"{top}/{entry.name}")
    return targets


def is_git_worktree(root: str | Path) -> bool:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    except OSError:
        return False
    return out.returncode == 0 and Path(out.stdout.strip()).resolve() == Path(root).resolve()


def pointer_path(target: str) -> str:
    return f"{target}.dvc"


def read_pointer(path: str | Path) -> dict[str, Any]:
    """``outs[0]`` of a DVC pointer file (``md5``, ``size``, ``nfiles``, ``path``)."""
    import yaml

    path = Path(path)
    doc = yaml.safe_load(path.read_text()) or {}
    outs = doc.get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise ValueError(f"{path}: not a DVC pointer file (no outs[0].md5)")
    return outs[0]


def dvc_track(root: str | Path = ".", targets: Sequence[str] | None = None) -> dict[str, str]:
    """``dvc add`` the targets (default: :func:`dvc_targets`); returns ``{pointer file: md5}``.

    ``root`` must be a DVC repository (``.dvc/`` at its top, as committed). Outside a git work tree (a copy of
    the repository, an unpacked archive), DVC runs without SCM: pointers are written, ``.gitignore`` untouched.
    """
    root = Path(root).resolve()
    if not (root / ".dvc").is_dir():
        raise FileNotFoundError(f"{root}: not a DVC repository (no .dvc/ folder): run `dvc init` there, or set "
                                "tracking.dvc: false to skip versioning")
    targets = list(dvc_targets(root) if targets is None else targets)
    missing = [t for t in targets if not (root / t).exists()]
    if missing:
        raise FileNotFoundError(f"nothing to version at {', '.join(missing)} (under {root})")
    if not targets:
        return {}
    from dvc.repo import Repo

    config = None if is_git_worktree(root) else {"core": {"no_scm": True}}
    if config:
        log.warning("%s is not the top of a git work tree: DVC runs without git (no .gitignore entries)", root)
    stale = leftovers(root, targets)
    cwd = os.getcwd()
    try:
        os.chdir(root)  # DVC resolves targets against the working directory
        with Repo(str(root), config=config) as repo:
            versioned = [p for p in stale if not repo.dvcignore.is_ignored_file(str(p))]
            if versioned:
                raise ValueError(f"{root}: DVC would version what killed jobs left behind: "
                                 f"{', '.join(str(p.relative_to(root)) for p in versioned)}; delete these files "
                                 "(they are never results) or restore the project's .dvcignore")
            if stale:
                log.warning("not versioned, left behind by killed jobs (safe to delete): %s",
                            ", ".join(str(p.relative_to(root)) for p in stale))
            repo.add(targets, relink=False)
    finally:
        os.chdir(cwd)
    return {pointer_path(t): str(read_pointer(root / pointer_path(t))["md5"]) for t in targets}


def log_pointers_to_parent(pointers: Mapping[str, str], tracking_cfg: Mapping[str, Any] | None,
                           root: str | Path = ".") -> str | None:
    """Attach the pointer files to the workflow's running parent MLflow run (artifacts under ``dvc/``) and set
    its ``tmf.data_version`` tag to the md5 just recorded for ``data/``. Returns the parent run id or None."""
    from tmf.tracking import parent_run

    run = parent_run(tracking_cfg)
    if run is None:
        return None
    root = Path(root)
    for pointer in pointers:
        folder = os.path.dirname(pointer)
        run.log_artifact(root / pointer, f"dvc/{folder}" if folder else "dvc")
    if "data.dvc" in pointers:
        run.set_tags({"tmf.data_version": pointers["data.dvc"]})
    return run.run_id
