"""Submit, status and cancel commands for snakemake-executor-plugin-cluster-generic.

The profile in this folder calls three thin scripts (submit.py, status.py, cancel.py) which use this module.
Snakemake writes each job as a shell script whose second line is ``# properties = {json}`` (rule, threads,
resources, wildcards); ``submit.py JOBSCRIPT`` reads it, builds the scheduler's submit command, runs it and
prints the job id; ``status.py JOBID`` prints ``success``, ``failed`` or ``running``; ``cancel.py JOBID...``
cancels. ``TMF_CLUSTER_SCHEDULER`` picks the scheduler: ``slurm`` (default; the one tested against a real
cluster by tests/slurm/run_slurm_test.sh), ``pbs`` (OpenPBS / PBS Pro), ``sge`` (Son/Univa Grid Engine) or
``lsf``. The PBS, SGE and LSF mappings follow each scheduler's manual but have not run on a real cluster
here; docs/cluster.md says what to check when adapting one (memory units, GPU requests, parallel
environments).

Resources read from the job (the same names as snakemake-executor-plugin-slurm, so both profiles share them):
``threads``, ``mem_mb``, ``runtime`` (minutes), ``slurm_partition`` (queue), ``slurm_account``
(account / project), ``gpu`` (count), ``gpu_model``, ``gres`` (SLURM only).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

SCHEDULERS = ("slurm", "pbs", "sge", "lsf")
LOG_DIR_ENV = "TMF_CLUSTER_LOGDIR"


def scheduler_name() -> str:
    """The scheduler named by ``TMF_CLUSTER_SCHEDULER`` (default ``slurm``)."""
    name = os.environ.get("TMF_CLUSTER_SCHEDULER", "slurm").strip().lower() or "slurm"
    if name not in SCHEDULERS:
        raise ValueError(f"TMF_CLUSTER_SCHEDULER={name!r}: expected one of {', '.join(SCHEDULERS)}")
    return name


def read_job_properties(jobscript: str | Path) -> dict:
    """The ``# properties = {...}`` JSON that Snakemake writes into every job script."""
    path = Path(jobscript)
    if not path.is_file():
        raise FileNotFoundError(f"job script not found: {path}")
    with path.open() as f:
        for line in f:
            if line.startswith("# properties = "):
                return json.loads(line[len("# properties = ") :])
    raise ValueError(f"{path}: no '# properties = ' line (not a Snakemake job script?)")


def _hhmmss(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def job_name(props: dict) -> str:
    """``tmf.<rule>`` (``tmf.group.<id>`` for group jobs): what the scheduler's queue shows."""
    if props.get("type") == "group":
        return f"tmf.group.{props.get('groupid', 'group')}"
    return f"tmf.{props.get('rule', 'job')}"


def _resources(props: dict) -> dict:
    res = dict(props.get("resources") or {})
    out = {
        "threads": max(1, int(props.get("threads") or 1)),
        "mem_mb": int(res["mem_mb"]) if res.get("mem_mb") else None,
        "runtime": int(res["runtime"]) if res.get("runtime") else None,
        "queue": str(res.get("slurm_partition") or ""),
        "account": str(res.get("slurm_account") or ""),
        "gpu": int(res.get("gpu") or 0),
        "gpu_model": str(res.get("gpu_model") or ""),
        "gres": str(res.get("gres") or ""),
    }
    if out["gpu_model"] and not out["gpu"]:
        out["gpu"] = 1
    return out


def submit_command(scheduler: str, props: dict, jobscript: str, log_dir: str) -> list[str]:
    """The argument list that submits ``jobscript`` with the job's threads, memory, time, queue and GPUs."""
    r = _resources(props)
    name = job_name(props)
    log = str(Path(log_dir) / props.get("rule", "group"))
    if scheduler == "slurm":
        cmd = ["sbatch", "--parsable", f"--job-name={name}", f"--output={log}/%j.log",
               f"--cpus-per-task={r['threads']}"]
        if r["mem_mb"]:
            cmd.append(f"--mem={r['mem_mb']}")
        if r["runtime"]:
            cmd.append(f"--time={r['runtime']}")
        if r["queue"]:
            cmd.append(f"--partition={r['queue']}")
        if r["account"]:
            cmd.append(f"--account={r['account']}")
        if r["gres"]:
            cmd.append(f"--gres={r['gres']}")
        elif r["gpu"]:
            cmd.append(f"--gpus={r['gpu_model'] + ':' if r['gpu_model'] else ''}{r['gpu']}")
    elif scheduler == "pbs":
        select = f"select=1:ncpus={r['threads']}"
        if r["mem_mb"]:
            select += f":mem={r['mem_mb']}mb"
        if r["gpu"]:
            select += f":ngpus={r['gpu']}"
            if r["gpu_model"]:
                select += f":gpu_model={r['gpu_model']}"
        cmd = ["qsub", "-N", name, "-j", "oe", "-o", f"{log}/", "-V", "-l", select]
        if r["runtime"]:
            cmd += ["-l", f"walltime={_hhmmss(r['runtime'])}"]
        if r["queue"]:
            cmd += ["-q", r["queue"]]
        if r["account"]:
            cmd += ["-A", r["account"]]
    elif scheduler == "sge":
        cmd = ["qsub", "-terse", "-cwd", "-V", "-N", name, "-j", "y", "-o", f"{log}/", "-pe", "smp",
               str(r["threads"])]
        if r["mem_mb"]:
            # h_vmem is per slot in Grid Engine.
            cmd += ["-l", f"h_vmem={math.ceil(r['mem_mb'] / r['threads'])}M"]
        if r["runtime"]:
            cmd += ["-l", f"h_rt={_hhmmss(r['runtime'])}"]
        if r["gpu"]:
            cmd += ["-l", f"gpu={r['gpu']}"]
        if r["queue"]:
            cmd += ["-q", r["queue"]]
        if r["account"]:
            cmd += ["-P", r["account"]]
    elif scheduler == "lsf":
        cmd = ["bsub", "-J", name, "-o", f"{log}/%J.log", "-n", str(r["threads"]), "-R", "span[hosts=1]"]
        if r["mem_mb"]:
            # MB, assuming LSF_UNIT_FOR_LIMITS=MB (the usual setting); rusage is per job slot.
            per_slot = math.ceil(r["mem_mb"] / r["threads"])
            cmd += ["-R", f"rusage[mem={per_slot}]", "-M", str(r["mem_mb"])]
        if r["runtime"]:
            cmd += ["-W", str(r["runtime"])]
        if r["gpu"]:
            cmd += ["-gpu", f"num={r['gpu']}" + (f":gmodel={r['gpu_model']}" if r["gpu_model"] else "")]
        if r["queue"]:
            cmd += ["-q", r["queue"]]
        if r["account"]:
            cmd += ["-P", r["account"]]
    else:
        raise ValueError(f"unknown scheduler {scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    cmd.append(str(jobscript))
    return cmd


def parse_submit_output(scheduler: str, stdout: str) -> str:
    """The job id in what the submit command printed."""
    text = stdout.strip()
    if scheduler == "slurm":
        match = re.search(r"^(\d+)(;\S+)?$", text, re.MULTILINE)  # --parsable: "id" or "id;cluster"
    elif scheduler == "pbs":
        match = re.search(r"^(\d+(?:\[\])?\.\S+|\d+)$", text, re.MULTILINE)  # "1234.server"
    elif scheduler == "sge":
        match = re.search(r"^(\d+)", text, re.MULTILINE)  # -terse: "1234" (array: "1234.1-10:1")
    elif scheduler == "lsf":
        match = re.search(r"Job <(\d+)>", text)  # "Job <1234> is submitted to queue <normal>."
    else:
        raise ValueError(f"unknown scheduler {scheduler!r}")
    if not match:
        raise ValueError(f"no {scheduler} job id in the submit command's output: {text!r}")
    return match.group(1)


SLURM_RUNNING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT", "STOPPED",
                 "SPECIAL_EXIT"}
SLURM_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                "PREEMPTED", "REVOKED"}


def slurm_state(state: str) -> str:
    """success / failed / running for a SLURM job state (``CANCELLED by 0`` counts as CANCELLED)."""
    state = state.strip().split()[0].rstrip("+").upper() if state.strip() else ""
    if state == "COMPLETED":
        return "success"
    if state in SLURM_FAILED:
        return "failed"
    if state in SLURM_RUNNING:
        return "running"
    raise ValueError(f"unknown SLURM job state {state!r}")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def job_status(scheduler: str, jobid: str, run=_run) -> str:
    """Ask the scheduler about ``jobid``; returns ``success``, ``failed`` or ``running``."""
    if scheduler == "slurm":
        # scontrol knows jobs until MinJobAge (default 300 s) after they end; sacct (accounting) after that.
        res = run(["scontrol", "show", "job", "-o", jobid])
        match = re.search(r"\bJobState=(\S+)", res.stdout) if res.returncode == 0 else None
        if match:
            return slurm_state(match.group(1))
        if res.returncode != 0 and "invalid job id" not in (res.stderr + res.stdout).lower():
            return "running"  # slurmctld busy or restarting: Snakemake asks again later
        res = run(["sacct", "-n", "-X", "-P", "-j", jobid, "-o", "State"])
        states = [s for s in res.stdout.split("\n") if s.strip()] if res.returncode == 0 else []
        if states:
            return slurm_state(states[0])
        raise RuntimeError(f"neither scontrol nor sacct knows SLURM job {jobid}")
    if scheduler == "pbs":
        res = run(["qstat", "-fx", jobid])
        if res.returncode != 0:
            raise RuntimeError(f"qstat -fx {jobid} failed: {res.stderr.strip()}")
        state = re.search(r"job_state = (\S+)", res.stdout)
        if state and state.group(1) in ("F", "X"):
            code = re.search(r"Exit_status = (-?\d+)", res.stdout)
            return "success" if code and int(code.group(1)) == 0 else "failed"
        return "running"
    if scheduler == "sge":
        if run(["qstat", "-j", jobid]).returncode == 0:
            return "running"
        res = run(["qacct", "-j", jobid])
        if res.returncode != 0:
            return "running"  # accounting lags a few seconds behind the end of a job
        failed = re.search(r"^failed\s+(\d+)", res.stdout, re.MULTILINE)
        code = re.search(r"^exit_status\s+(\d+)", res.stdout, re.MULTILINE)
        ok = failed and code and int(failed.group(1)) == 0 and int(code.group(1)) == 0
        return "success" if ok else "failed"
    if scheduler == "lsf":
        res = run(["bjobs", "-noheader", "-o", "stat", jobid])
        stat = res.stdout.strip()
        if stat == "DONE":
            return "success"
        if stat == "EXIT":
            return "failed"
        if res.returncode != 0 or not stat:
            raise RuntimeError(f"bjobs {jobid} failed: {res.stderr.strip()}")
        return "running"
    raise ValueError(f"unknown scheduler {scheduler!r}")


CANCEL = {"slurm": ["scancel"], "pbs": ["qdel"], "sge": ["qdel"], "lsf": ["bkill"]}


def submit_main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: submit.py JOBSCRIPT", file=sys.stderr)
        return 2
    scheduler = scheduler_name()
    props = read_job_properties(argv[0])
    log_dir = os.environ.get(LOG_DIR_ENV, "logs/cluster")
    Path(log_dir, props.get("rule", "group")).mkdir(parents=True, exist_ok=True)
    cmd = submit_command(scheduler, props, argv[0], log_dir)
    res = _run(cmd)
    if res.returncode != 0:
        print(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}", file=sys.stderr)
        return 1
    print(parse_submit_output(scheduler, res.stdout))
    return 0


def status_main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: status.py JOBID", file=sys.stderr)
        return 2
    print(job_status(scheduler_name(), argv[0]))
    return 0


def cancel_main(argv: list[str]) -> int:
    if not argv:
        return 0
    return subprocess.run(CANCEL[scheduler_name()] + argv).returncode
