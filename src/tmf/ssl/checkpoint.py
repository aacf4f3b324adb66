"""Pretraining checkpoints: written with a checksum, read back only when intact and made by the same run.

``checkpoint.pt`` (docs/file-formats.md, "Pretraining") is ``torch.save({"format", "version", "sha256", "state"})``,
``sha256`` a digest of every value of ``state`` (:func:`state_digest`: each tensor's dtype, shape and bytes, every
number and string), so a file changed anywhere (a truncated copy, a patch of plausible floats inside a tensor) is
found before anything of it is used. It loads with ``weights_only=True``: tensors, numbers, strings, lists and
dicts only, never code.

A run resumes from a checkpoint only when it was written by the same method and seed, the same pretraining
parameters (but those that cannot change the result, ``RESUME_FREE``) and the same training data: the
fingerprint of the manifest and the packed images (:meth:`tmf.data.packed.Packed.fingerprint`, a content hash, so
a re-run of the data stage that rewrites identical bytes still resumes, and a new subsample never does). Else it
trains from scratch, and says why in the log. A checkpoint that cannot be read or fails its checksum is renamed
aside (``checkpoint.pt.corrupt[-k]``, named in the log) and training starts over: never used, never a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import torch

from tmf.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FORMAT, VERSION = "tmf-pretrain-checkpoint", 2
# Parameters that may change between a run and its resumption without changing its result.
RESUME_FREE = {"checkpoint_every", "ddp", "nproc", "device", "threads"}


class CorruptCheckpoint(ValueError):
    """A checkpoint file that cannot be read or whose checksum does not match."""


def state_digest(obj) -> str:
    """SHA-256 of a nested state (dicts, lists, tuples, tensors, numbers, strings) in a fixed traversal order."""
    h = hashlib.sha256()

    def walk(o) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(o, dict):
            h.update(f"D{len(o)}".encode())
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                walk(o[k])
        elif isinstance(o, list | tuple):
            h.update(f"L{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            h.update(f"V{o!r}".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) with its digest, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, "sha256": state_digest(state), "state": state}, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """The state saved in ``path``; :class:`CorruptCheckpoint` naming the file when it cannot be trusted."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the damage (zip, pickle, EOF), the file is not usable
        raise CorruptCheckpoint(f"{path}: unreadable ({_first_line(e)})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("version") != VERSION \
            or not isinstance(saved.get("state"), dict):
        raise CorruptCheckpoint(f"{path}: not a version-{VERSION} pretraining checkpoint")
    if state_digest(saved["state"]) != saved.get("sha256"):
        raise CorruptCheckpoint(f"{path}: checksum mismatch (the file was changed after it was written)")
    return saved["state"]


def _first_line(e: Exception) -> str:
    """The error's type and first sentence (torch's loader explains at length, and suggests unsafe loading)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0].split('. ')[0].rstrip('.')}" if lines else type(e).__name__


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt-1``, ``-2``, ... when taken) and return the new path."""
    target, k = path.with_name(path.name + ".corrupt"), 0
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.corrupt-{k}")
    path.rename(target)
    return target


def comparable(cfg: dict, method: str) -> dict:
    """What a run's result depends on: the pretrain section minus what only enumerates jobs (methods, seeds) or
    cannot change the result, with the method parameters of this method only."""
    out = {k: v for k, v in cfg.items() if k not in RESUME_FREE | {"methods", "seeds", "method_params"}}
    out["method_params"] = cfg.get("method_params", {}).get(method, {})
    return out


def resumable_state(path: Path, method: str, seed: int, cfg: dict, data: str, is_main: bool = True,
                    barrier=None) -> dict | None:
    """The state to resume from, or None (no checkpoint, a stale one, a corrupt one moved aside).

    ``data``: the fingerprint of the training data. Every process of a data-parallel run reads the file and comes
    to the same answer; ``barrier`` (called before the main process moves a corrupt file aside) keeps the others
    from finding it gone half-way."""
    if not path.exists():
        return None
    try:
        state = read_checkpoint(path)
    except CorruptCheckpoint as e:
        if barrier is not None:
            barrier()
        if is_main:
            log.warning("%s; moved it to %s and training from scratch", e, move_aside(path).name)
        return None
    why = []
    if state.get("method") != method or state.get("seed") != seed:
        why.append(f"another method or seed ({state.get('method')}, seed {state.get('seed')})")
    if comparable(state.get("params", {}), method) != comparable(cfg, method):
        why.append("other parameters (pretrain section)")
    if state.get("data") != data:
        why.append("other training data (manifest or packed images changed)")
    if why:
        # The workflow re-runs the job for exactly such a change: the next checkpoint replaces this one.
        if is_main:
            log.warning("%s was written with %s: not resuming from it, training from scratch", path, "; ".join(why))
        return None
    return state


def rng_state(aug_state: torch.Tensor) -> dict:
    """Every random stream of the process, as tensors and numbers (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(), "augment": aug_state,
          "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, aug_gen: torch.Generator) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = st["python"]
    random.setstate((version, tuple(internal), gauss))
    aug_gen.set_state(st["augment"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
