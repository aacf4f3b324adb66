"""Checks for tests/slurm/run_slurm_test.sh: did every job go through SLURM, and do the outputs match?

    python tests/slurm/audit.py jobs --executor slurm --log run.log --jobcomp jobcomp.txt --workdir RUN
    python tests/slurm/audit.py compare LOCAL_RUN CLUSTER_RUN

``jobs`` reads the Snakemake log: every job block ``rule X:`` (not ``localrule X:``) must have been
submitted, under its Snakemake job id, to SLURM, and its last SLURM job must appear COMPLETED with exit code
0:0 in slurmctld's job completion records (jobcomp/filetxt). The executor's per-job log file
(``.snakemake/slurm_logs/rule_X/.../<id>.log`` or ``logs/cluster/X/<id>.log``) ties each SLURM id to its rule
independently of the Snakemake log. ``compare`` checks that every output file of the local run exists in the
cluster run and has the same content: CSV and JSON after dropping fields that measure the run rather than the
result (timings, throughput, host names, tracking ids), torch files by their loaded content (tensors by value),
DVC files by what they track (paths, file counts), since their hashes cover the timing fields above; everything
else byte for byte, except the formats listed in LOOSE (PDF/SVG figures, HTML and notebooks, which carry run
dates; databases), whose differences are reported but not fatal.
Exit status 0 when all checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

RULE_RE = re.compile(r"^(local)?rule (\w+):\s*$")
JOBID_RE = re.compile(r"^\s+jobid: (\d+)\s*$")
SUBMIT_RES = {
    "slurm": re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+)"),
    "cluster-generic": re.compile(r"^Submitted (?:group )?job (\d+) with external jobid '(\d+)(?:;\S+)?'"),
}
# Output folders compared; logs, benchmarks, Snakemake's own state and tracking stores are not outputs.
OUTPUT_DIRS = ("data", "results", "reports")
SKIP_PARTS = {".snakemake", "logs", "benchmarks", "mlflow", "mlruns", "__pycache__", ".ipynb_checkpoints"}
# Fields that describe the run, not the result.
VOLATILE = re.compile(
    r"(time|seconds|duration|elapsed|per_s|per_sec|throughput|date|timestamp|host|node|hostname|run_id|"
    r"mlflow|tracking|uri|wall|started|finished|pid|user|workdir|cwd)",
    re.IGNORECASE,
)
LOOSE = {".png", ".pdf", ".svg", ".html", ".ipynb", ".db", ".sqlite", ".pkl", ".zip"}
# torch.save archives embed the (temporary) file name, so they are compared by content.
TORCH = {".pt", ".pth", ".ckpt"}


def parse_snakemake_log(text: str, executor: str) -> tuple[dict[int, tuple[str, bool]], dict[int, list[str]]]:
    """Snakemake job id -> (rule, is local), and Snakemake job id -> SLURM job ids in submission order."""
    jobs: dict[int, tuple[str, bool]] = {}
    submitted: dict[int, list[str]] = {}
    pending: tuple[str, bool] | None = None
    submit_re = SUBMIT_RES[executor]
    for line in text.splitlines():
        m = RULE_RE.match(line)
        if m:
            pending = (m.group(2), bool(m.group(1)))
            continue
        m = JOBID_RE.match(line)
        if m and pending is not None:
            jobs[int(m.group(1))] = pending
            pending = None
            continue
        m = submit_re.match(line)
        if m:
            submitted.setdefault(int(m.group(1)), []).append(m.group(2))
    return jobs, submitted


def parse_jobcomp(text: str) -> dict[str, dict[str, str]]:
    """SLURM job id -> fields of its jobcomp/filetxt record (``Key=Value`` pairs)."""
    records = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


def executor_logs(executor: str, workdir: Path) -> dict[str, str]:
    """SLURM job id -> rule, from the per-job log files the executor wrote."""
    found = {}
    if executor == "slurm":
        for path in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
            rule_dir = next((p for p in path.relative_to(workdir / ".snakemake" / "slurm_logs").parts
                             if p.startswith("rule_")), None)
            if rule_dir and path.stem.isdigit():
                found[path.stem] = rule_dir[len("rule_"):]
    else:
        for path in (workdir / "logs" / "cluster").glob("*/*.log"):
            if path.stem.isdigit():
                found[path.stem] = path.parent.name
    return found


def check_jobs(executor: str, log_text: str, jobcomp_text: str, workdir: Path,
               expect_remote: list[str]) -> list[str]:
    """Problems found (empty: every non-local job ran as a completed SLURM job)."""
    problems = []
    jobs, submitted = parse_snakemake_log(log_text, executor)
    records = parse_jobcomp(jobcomp_text)
    logs = executor_logs(executor, workdir)
    remote = {jid: rule for jid, (rule, local) in jobs.items() if not local}
    local = Counter(rule for rule, is_local in jobs.values() if is_local)
    if not remote:
        problems.append("no job was submitted: every job ran as a local rule")
    for rule in expect_remote:
        if rule not in remote.values():
            problems.append(f"rule {rule} did not run as a cluster job (local rules: {dict(local)})")
    for jid, rule in sorted(remote.items()):
        ids = submitted.get(jid)
        if not ids:
            problems.append(f"job {jid} ({rule}) ran but has no SLURM job id in the Snakemake log")
            continue
        for sid in ids:
            if sid not in records:
                problems.append(f"job {jid} ({rule}): SLURM job {sid} missing from the jobcomp records")
            if logs.get(sid) != rule:
                problems.append(f"job {jid} ({rule}): no executor log for SLURM job {sid} under rule {rule} "
                                f"(found {logs.get(sid)!r})")
        last = records.get(ids[-1], {})
        if last.get("JobState") != "COMPLETED" or last.get("ExitCode") != "0:0":
            problems.append(f"job {jid} ({rule}): SLURM job {ids[-1]} ended {last.get('JobState')} "
                            f"exit {last.get('ExitCode')}")
        if executor == "cluster-generic" and last and last.get("Name") != f"tmf.{rule}":
            problems.append(f"job {jid} ({rule}): SLURM job {ids[-1]} is named {last.get('Name')!r}")
    unknown = set(submitted) - set(remote)
    if unknown:
        problems.append(f"submissions for jobs without a rule block in the log: {sorted(unknown)}")
    n_slurm = sum(len(v) for v in submitted.values())
    print(f"[audit] {executor}: {len(remote)} jobs through SLURM ({n_slurm} submissions, "
          f"{Counter(remote.values())}), local rules {dict(local)}")
    return problems


def _drop_volatile(obj):
    if isinstance(obj, dict):
        return {k: _drop_volatile(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [_drop_volatile(v) for v in obj]
    return obj


def _same_content(a, b) -> bool:
    """Deep equality of loaded torch objects: tensors by value (and dtype), dicts without timing fields."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        ka = {k for k in a if not VOLATILE.search(str(k))}
        kb = {k for k in b if not VOLATILE.search(str(k))}
        return ka == kb and all(_same_content(a[k], b[k]) for k in ka)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_content(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _torch_equal(a: Path, b: Path) -> bool:
    import torch

    def load(p: Path):
        obj = torch.load(p, map_location="cpu", weights_only=False)
        if isinstance(obj, dict) and "state" in obj and "sha256" in obj:
            # A pretraining checkpoint (tmf.ssl.checkpoint): its digest covers the timing fields of the state too,
            # so it differs between any two runs; the state it covers is compared instead.
            obj = {k: v for k, v in obj.items() if k != "sha256"}
        return obj

    return _same_content(load(a), load(b))


def _dvc_outs(data: bytes) -> list[dict]:
    """What a ``.dvc`` file tracks, without the content hashes and sizes."""
    import yaml

    return [{k: v for k, v in out.items() if k not in ("md5", "size", "hash")}
            for out in yaml.safe_load(data).get("outs", [])]


def _csv_rows(data: bytes) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(data.decode())))
    if not rows:
        return rows
    keep = [i for i, name in enumerate(rows[0]) if not VOLATILE.search(name)]
    return [[row[i] for i in keep if i < len(row)] for row in rows]


def output_files(run: Path) -> list[Path]:
    files = []
    for top in OUTPUT_DIRS:
        base = run / top
        if base.is_dir():
            for path in base.rglob("*"):
                rel = path.relative_to(run)
                if path.is_file() and not SKIP_PARTS.intersection(rel.parts):
                    files.append(rel)
    return sorted(files)


def compare_runs(reference: Path, other: Path) -> tuple[list[str], list[str]]:
    """(problems, notes): differences in outputs of ``other`` against ``reference``."""
    problems, notes = [], []
    files = output_files(reference)
    if not files:
        problems.append(f"the reference run {reference} has no outputs under {', '.join(OUTPUT_DIRS)}")
    extra = set(output_files(other)) - set(files)
    if extra:
        notes.append(f"files only in {other}: {sorted(map(str, extra))[:10]}")
    same = 0
    for rel in files:
        a, b = reference / rel, other / rel
        if not b.is_file():
            problems.append(f"{rel}: missing")
            continue
        da, db = a.read_bytes(), b.read_bytes()
        if da == db:
            same += 1
            continue
        suffix = rel.suffix.lower()
        if suffix == ".json":
            if _drop_volatile(json.loads(da)) == _drop_volatile(json.loads(db)):
                same += 1
            else:
                problems.append(f"{rel}: JSON differs beyond timing fields")
        elif suffix in (".csv", ".tsv"):
            if _csv_rows(da) == _csv_rows(db):
                same += 1
            else:
                problems.append(f"{rel}: CSV differs beyond timing columns")
        elif suffix == ".dvc":
            if _dvc_outs(da) == _dvc_outs(db):
                same += 1
                notes.append(f"{rel}: same paths and file counts, hashes differ (timing fields)")
            else:
                problems.append(f"{rel}: tracks other paths or file counts")
        elif suffix in TORCH:
            if _torch_equal(a, b):
                same += 1
            else:
                problems.append(f"{rel}: tensors or fields differ")
        elif suffix in LOOSE:
            notes.append(f"{rel}: bytes differ ({suffix} not compared)")
        else:
            problems.append(f"{rel}: bytes differ")
    print(f"[audit] {other.name}: {same} of {len(files)} output files equal to {reference.name}")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    pj = sub.add_parser("jobs", help="every non-local job went through SLURM and completed")
    pj.add_argument("--executor", choices=sorted(SUBMIT_RES), required=True)
    pj.add_argument("--log", type=Path, required=True, help="Snakemake's output")
    pj.add_argument("--jobcomp", type=Path, required=True, help="slurmctld's jobcomp/filetxt file")
    pj.add_argument("--workdir", type=Path, required=True, help="the workflow's working directory")
    pj.add_argument("--expect-remote", default="", help="comma-separated rules that must run on SLURM")
    pc = sub.add_parser("compare", help="outputs of a run equal those of a reference run")
    pc.add_argument("reference", type=Path)
    pc.add_argument("other", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "jobs":
        for path in (args.log, args.jobcomp):
            if not path.is_file():
                print(f"[audit] FAIL: {path} not found", file=sys.stderr)
                return 1
        problems = check_jobs(args.executor, args.log.read_text(), args.jobcomp.read_text(), args.workdir,
                              [r for r in args.expect_remote.split(",") if r])
        notes: list[str] = []
    else:
        problems, notes = compare_runs(args.reference, args.other)
    for note in notes:
        print(f"[audit] note: {note}")
    for problem in problems:
        print(f"[audit] FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
