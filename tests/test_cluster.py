"""Cluster profiles (workflow/profiles/slurm, workflow/profiles/cluster-generic) and the real SLURM test.

Fast tests: both profiles render (with and without the TMF_SLURM_* variables), request the same resources,
scale memory and time with the attempt, name only rules of the workflow, and keep `snakemake --lint` clean;
the cluster-generic scheduler module builds the documented submit commands and maps job states; the
cluster-generic profile runs a small workflow end to end against stand-in `sbatch`/`scontrol` commands.

The real test (tests/slurm/run_slurm_test.sh: Debian's slurm-wlm + munge, a one-node cluster on 127.0.0.1,
the workflow through both profiles, every job checked in slurmctld's records, outputs equal to a local run)
runs when TMF_RUN_SLURM_TEST=1, or when SLURM is installed and we are root, unless TMF_RUN_SLURM_TEST=0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

try:
    from .conftest import BIN, REPO, snakemake
except ImportError:  # tests/ is not a package
    from conftest import BIN, REPO, snakemake

PROFILES = REPO / "workflow" / "profiles"
SLURM_SCRIPT = REPO / "tests" / "slurm" / "run_slurm_test.sh"
TINY = REPO / "tests" / "configs" / "tiny.yaml"
ENV_KEYS = [k for k in os.environ if k.startswith("TMF_SLURM_") or k == "TMF_CLUSTER_SCHEDULER"]


def render(profile: str, env: dict[str, str] | None = None) -> dict:
    """The profile as Snakemake reads it (YTE rendered, key=value lists), in a clean TMF_SLURM_* environment."""
    code = textwrap.dedent(f"""
        import json, sys
        from snakemake.profiles import ProfileConfigFileParser
        with open({str(PROFILES / profile / 'config.yaml')!r}) as f:
            json.dump(ProfileConfigFileParser().parse(f), sys.stdout)
    """)
    clean = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **(env or {})}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def evaluate_resource(expr: str, attempt: int):
    """Evaluate a profile resource value the way Snakemake does (tmf/snakemake resources.cli_evaluator)."""
    from snakemake.resources import Resource

    return Resource.cli_evaluator("r", expr, wildcards={}, input=[], attempt=attempt, async_run=None)


def test_slurm_profile_defaults():
    cfg = render("slurm")
    assert cfg["executor"] == "slurm"
    assert int(cfg["retries"]) >= 1 and int(cfg["jobs"]) == 50
    assert int(cfg["cores"]) == 256  # the most cores requested at once
    default = pairs(cfg["default-resources"])
    # Unset variables give empty strings, which the plugin treats as "not given".
    assert evaluate_resource(default["slurm_partition"], 1) == ""
    assert evaluate_resource(default["slurm_account"], 1) == ""
    res = pairs(cfg["set-resources"])
    assert res["pretrain:gpu"] == "1" and res["evaluate:gpu"] == "1"
    assert "pretrain:gres" not in res and "pretrain:gpu_model" not in res
    threads = pairs(cfg["set-threads"])
    assert threads["pretrain"] == "8" and threads["subsample"] == "8"


def test_slurm_profile_variables():
    env = {"TMF_SLURM_PARTITION": "cpu", "TMF_SLURM_GPU_PARTITION": "gpu", "TMF_SLURM_ACCOUNT": "proj1",
           "TMF_SLURM_GPUS": "2", "TMF_SLURM_GPU_MODEL": "a100", "TMF_SLURM_JOBS": "7",
           "TMF_SLURM_GPU_CPUS": "16", "TMF_SLURM_GPU_MEM_MB": "64000", "TMF_SLURM_CPUS": "4"}
    cfg = render("slurm", env)
    assert cfg["jobs"] == "7"
    default = pairs(cfg["default-resources"])
    assert evaluate_resource(default["slurm_partition"], 1) == "cpu"
    assert evaluate_resource(default["slurm_account"], 1) == "proj1"
    res = pairs(cfg["set-resources"])
    assert evaluate_resource(res["pretrain:slurm_partition"], 1) == "gpu"
    assert evaluate_resource(res["evaluate:gpu_model"], 1) == "a100"
    assert res["pretrain:gpu"] == "2"
    assert evaluate_resource(res["pretrain:mem_mb"], 1) == 64000
    assert pairs(cfg["set-threads"]) ["pretrain"] == "16"
    assert pairs(cfg["set-threads"])["appearance_embed"] == "4"
    # A site that wants --gres gets it instead of --gpus (both would conflict).
    gres = pairs(render("slurm", {"TMF_SLURM_GPU_GRES": "gpu:v100:1"})["set-resources"])
    assert evaluate_resource(gres["pretrain:gres"], 1) == "gpu:v100:1"
    assert gres["pretrain:gpu"] == "0"


def test_retries_scale_memory_and_time():
    cfg = render("slurm")
    assert int(cfg["retries"]) == 2
    entries = {**pairs(cfg["default-resources"]), **pairs(cfg["set-resources"])}
    scaled = [k for k in entries if k.split(":")[-1] in ("mem_mb", "runtime")]
    assert {"mem_mb", "runtime", "pretrain:mem_mb", "pretrain:runtime"} <= set(scaled)
    for key in scaled:
        first, third = evaluate_resource(entries[key], 1), evaluate_resource(entries[key], 3)
        assert isinstance(first, int) and first > 0, key
        assert third == 3 * first, key


def test_profiles_request_the_same_resources():
    slurm, generic = render("slurm"), render("cluster-generic")
    assert generic["executor"] == "cluster-generic"
    for key in ("default-resources", "set-threads", "set-resources", "retries", "jobs", "cores"):
        assert slurm[key] == generic[key], key
    for key in ("submit", "status", "cancel"):
        script = Path(generic[f"cluster-generic-{key}-cmd"])  # made absolute: the file is in the profile
        assert script == PROFILES / "cluster-generic" / f"{key}.py"
        assert os.access(script, os.X_OK)


# --------------------------------------------------------------------------- cluster-generic scheduler module


def load_scheduler():
    spec = importlib.util.spec_from_file_location("tmf_cluster_scheduler",
                                                  PROFILES / "cluster-generic" / "scheduler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROPS = {"type": "single", "rule": "pretrain", "threads": 4, "jobid": 3,
         "resources": {"mem_mb": 8000, "runtime": 90, "slurm_partition": "gpu", "slurm_account": "proj",
                       "gpu": 1, "gpu_model": "a100"}}


def test_submit_commands():
    s = load_scheduler()
    slurm = s.submit_command("slurm", PROPS, "job.sh", "logs/cluster")
    assert slurm == ["sbatch", "--parsable", "--job-name=tmf.pretrain", "--output=logs/cluster/pretrain/%j.log",
                     "--cpus-per-task=4", "--mem=8000", "--time=90", "--partition=gpu", "--account=proj",
                     "--gpus=a100:1", "job.sh"]
    gres = dict(PROPS, resources={"gres": "gpu:2", "gpu": 0})
    assert "--gres=gpu:2" in s.submit_command("slurm", gres, "j", "l")
    assert not [a for a in s.submit_command("slurm", gres, "j", "l") if a.startswith("--gpus")]
    pbs = s.submit_command("pbs", PROPS, "job.sh", "logs")
    assert "select=1:ncpus=4:mem=8000mb:ngpus=1:gpu_model=a100" in pbs and "walltime=01:30:00" in pbs
    sge = s.submit_command("sge", PROPS, "job.sh", "logs")
    assert sge[sge.index("-pe") + 2] == "4" and "h_vmem=2000M" in sge and "h_rt=01:30:00" in sge
    lsf = s.submit_command("lsf", PROPS, "job.sh", "logs")
    assert "rusage[mem=2000]" in lsf and lsf[lsf.index("-W") + 1] == "90" and "num=1:gmodel=a100" in lsf
    for cmd in (slurm, pbs, sge, lsf):
        assert cmd[-1] == "job.sh"
    with pytest.raises(ValueError, match="scheduler"):
        s.submit_command("torque", PROPS, "job.sh", "logs")


def test_submit_output_and_states():
    s = load_scheduler()
    assert s.parse_submit_output("slurm", "1234\n") == "1234"
    assert s.parse_submit_output("slurm", "1234;cluster2\n") == "1234"
    assert s.parse_submit_output("pbs", "5678.pbs-server\n") == "5678.pbs-server"
    assert s.parse_submit_output("sge", "91011\n") == "91011"
    assert s.parse_submit_output("lsf", "Job <42> is submitted to queue <normal>.\n") == "42"
    with pytest.raises(ValueError, match="no slurm job id"):
        s.parse_submit_output("slurm", "sbatch: error: invalid partition\n")
    assert s.slurm_state("COMPLETED") == "success"
    assert s.slurm_state("CANCELLED by 0") == "failed"
    for state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"):
        assert s.slurm_state(state) == "failed"
    for state in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
        assert s.slurm_state(state) == "running"
    with pytest.raises(ValueError, match="unknown SLURM job state"):
        s.slurm_state("WEIRD")


def fake_run(outputs: dict[str, tuple[int, str, str]]):
    def run(cmd):
        rc, out, err = outputs.get(cmd[0], (1, "", f"{cmd[0]}: not found"))
        return subprocess.CompletedProcess(cmd, rc, out, err)

    return run


def test_slurm_status_scontrol_then_sacct():
    s = load_scheduler()
    line = "JobId=7 JobName=tmf.pretrain UserId=root(0) JobState={} Reason=None ExitCode=0:0"
    assert s.job_status("slurm", "7", fake_run({"scontrol": (0, line.format("RUNNING"), "")})) == "running"
    assert s.job_status("slurm", "7", fake_run({"scontrol": (0, line.format("COMPLETED"), "")})) == "success"
    assert s.job_status("slurm", "7", fake_run({"scontrol": (0, line.format("OUT_OF_MEMORY"), "")})) == "failed"
    gone = (1, "", "slurm_load_jobs error: Invalid job id specified")
    assert s.job_status("slurm", "7", fake_run({"scontrol": gone, "sacct": (0, "COMPLETED\n", "")})) == "success"
    assert s.job_status("slurm", "7", fake_run({"scontrol": gone, "sacct": (0, "TIMEOUT\n", "")})) == "failed"
    with pytest.raises(RuntimeError, match="neither scontrol nor sacct"):
        s.job_status("slurm", "7", fake_run({"scontrol": gone, "sacct": (0, "", "")}))
    busy = (1, "", "slurm_load_jobs error: Socket timed out on send/recv operation")
    assert s.job_status("slurm", "7", fake_run({"scontrol": busy})) == "running"


def test_other_schedulers_status():
    s = load_scheduler()
    assert s.job_status("pbs", "1.srv", fake_run({"qstat": (0, "job_state = R\n", "")})) == "running"
    done = "job_state = F\n    Exit_status = {}\n"
    assert s.job_status("pbs", "1.srv", fake_run({"qstat": (0, done.format(0), "")})) == "success"
    assert s.job_status("pbs", "1.srv", fake_run({"qstat": (0, done.format(271), "")})) == "failed"
    assert s.job_status("sge", "5", fake_run({"qstat": (0, "job_number: 5", "")})) == "running"
    acct = "failed       {}\nexit_status  {}\n"
    sge_ok = {"qstat": (1, "", "Following jobs do not exist"), "qacct": (0, acct.format(0, 0), "")}
    sge_bad = {"qstat": (1, "", "Following jobs do not exist"), "qacct": (0, acct.format(0, 1), "")}
    assert s.job_status("sge", "5", fake_run(sge_ok)) == "success"
    assert s.job_status("sge", "5", fake_run(sge_bad)) == "failed"
    assert s.job_status("lsf", "9", fake_run({"bjobs": (0, "RUN\n", "")})) == "running"
    assert s.job_status("lsf", "9", fake_run({"bjobs": (0, "DONE\n", "")})) == "success"
    assert s.job_status("lsf", "9", fake_run({"bjobs": (0, "EXIT\n", "")})) == "failed"


def test_job_properties_and_scheduler_choice(tmp_path, monkeypatch):
    s = load_scheduler()
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/sh\n# properties = {json.dumps(PROPS)}\necho hi\n")
    assert s.read_job_properties(script) == PROPS
    (tmp_path / "other.sh").write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ValueError, match="no '# properties = ' line"):
        s.read_job_properties(tmp_path / "other.sh")
    with pytest.raises(FileNotFoundError, match="missing.sh"):
        s.read_job_properties(tmp_path / "missing.sh")
    monkeypatch.setenv("TMF_CLUSTER_SCHEDULER", "PBS")
    assert s.scheduler_name() == "pbs"
    monkeypatch.setenv("TMF_CLUSTER_SCHEDULER", "htcondor")
    with pytest.raises(ValueError, match="TMF_CLUSTER_SCHEDULER='htcondor'"):
        s.scheduler_name()


# ----------------------------------------------- cluster-generic end to end against stand-in sbatch / scontrol

FAKE_SBATCH = r"""#!/bin/sh
# Stand-in for sbatch --parsable: records its arguments, runs the job script in the background, prints an id.
state=$FAKE_SLURM_STATE
id=$(($(cat "$state/next" 2>/dev/null || echo 100) + 1)); echo $id > "$state/next"
echo "$@" > "$state/$id.args"
for last; do :; done
out=$(printf '%s\n' "$@" | sed -n 's/^--output=//p' | sed "s/%j/$id/")
mkdir -p "$(dirname "$out")"
(SLURM_JOB_ID=$id sh "$last" > "$out" 2>&1; echo $? > "$state/$id.rc") </dev/null >/dev/null 2>&1 &
echo $id
"""
FAKE_SCONTROL = r"""#!/bin/sh
# Stand-in for scontrol show job -o ID.
state=$FAKE_SLURM_STATE; id=$4
[ -f "$state/$id.args" ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
if [ ! -f "$state/$id.rc" ]; then s=RUNNING; elif [ "$(cat "$state/$id.rc")" = 0 ]; then s=COMPLETED; else s=FAILED; fi
echo "JobId=$id JobName=x JobState=$s Reason=None"
"""
TOY = """
localrules: all, report

rule all:
    input: "results/report.txt"

rule pretrain:
    output: "results/pretrain/seed{seed}.txt"
    log: "logs/pretrain_{seed}.log"
    threads: 2
    resources: mem_mb=1000, runtime=10, gpu=0
    shell: "echo {wildcards.seed} threads={threads} job=$SLURM_JOB_ID > {output} 2> {log}"

rule score:
    output: "results/score/seed{seed}.txt"
    log: "logs/score_{seed}.log"
    resources: try_no=lambda wildcards, attempt: attempt
    # fails on its first attempt, so the profile's retry (with more memory and time) is exercised
    shell: "echo {wildcards.seed} > {output} 2> {log}; test {resources.try_no} -gt 1"

rule report:
    input: "results/pretrain/seed0.txt", "results/score/seed0.txt"
    output: "results/report.txt"
    log: "logs/report.log"
    shell: "cat {input} > {output} 2> {log}"
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL), ("scancel", "#!/bin/sh\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "wf"
    shutil.copytree(PROFILES / "cluster-generic", work / "workflow" / "profiles" / "cluster-generic")
    (work / "Snakefile").write_text(TOY)
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(PATH=f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}", FAKE_SLURM_STATE=str(state),
               TMF_SLURM_PARTITION="debug", TMF_SLURM_GPU_CPUS="3")
    return work, state, env


def run_generic(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "snakemake"), "--profile", "workflow/profiles/cluster-generic",
                           "--seconds-between-status-checks", "1", "--latency-wait", "3", "--nocolor", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cluster_generic_profile_end_to_end(fake_slurm):
    work, state, env = fake_slurm
    proc = run_generic(work, env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    args = {p.stem: p.read_text().split() for p in sorted(state.glob("*.args"))}
    # pretrain, score (2 attempts); all and report are local rules
    assert sorted(a[1] for a in args.values()) == ["--job-name=tmf.pretrain"] + ["--job-name=tmf.score"] * 2
    for a in args.values():
        assert a[0] == "--parsable" and "--partition=debug" in a  # partition from TMF_SLURM_PARTITION
    for a in (a for a in args.values() if a[1] == "--job-name=tmf.pretrain"):  # set-threads, set-resources
        assert {"--cpus-per-task=3", "--mem=32000", "--time=720", "--gpus=1"} <= set(a)
    score = [a for a in args.values() if a[1] == "--job-name=tmf.score"]
    first = [a for a in score if "--mem=2000" in a]  # default-resources: 2000 * attempt, 30 * attempt
    retry = [a for a in score if "--mem=4000" in a]
    assert len(first) == 1 and len(retry) == 1
    assert all("--time=30" in a for a in first) and all("--time=60" in a for a in retry)
    for jobid in args:
        assert list((work / "logs" / "cluster").glob(f"*/{jobid}.log")), jobid
    text = (work / "results" / "report.txt").read_text()
    # ran inside the stand-in jobs, with the profile's threads (the profile's `cores` caps them, not this host)
    assert "threads=3" in text and "job=10" in text


# --------------------------------------------------------------------------------- the real workflow


needs_workflow = pytest.mark.skipif(not (REPO / "Snakefile").is_file(), reason="no Snakefile yet")


@needs_workflow
def test_profiles_name_only_workflow_rules():
    proc = snakemake(REPO, "--list-rules", "--workflow-profile", "none")
    rules = {line.strip() for line in proc.stdout.splitlines() if line.strip()}
    for profile in ("slurm", "cluster-generic"):
        cfg = render(profile)
        named = {k.split("=")[0] for k in cfg["set-threads"]} | {k.split(":")[0] for k in cfg["set-resources"]}
        assert named <= rules, f"{profile} names rules the workflow lacks: {sorted(named - rules)}"


@needs_workflow
@pytest.mark.parametrize("profile", ["slurm", "cluster-generic"])
def test_lint_clean_with_profile(workdir, profile):
    proc = snakemake(workdir, "--lint", "--profile", f"workflow/profiles/{profile}", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Lints for" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------- the real SLURM test


def slurm_test_wanted() -> tuple[bool, str]:
    flag = os.environ.get("TMF_RUN_SLURM_TEST")
    if flag == "0":
        return False, "TMF_RUN_SLURM_TEST=0"
    if flag == "1":
        return True, ""
    installed = all(shutil.which(c) for c in ("slurmctld", "slurmd", "munged", "sbatch"))
    if installed and os.geteuid() == 0:
        return True, ""
    return False, ("SLURM not installed (or not root): set TMF_RUN_SLURM_TEST=1 to install Debian's slurm-wlm "
                   "and run tests/slurm/run_slurm_test.sh")


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(3000)
@needs_workflow
def test_workflow_through_real_slurm():
    wanted, reason = slurm_test_wanted()
    if not wanted:
        pytest.skip(reason)
    env = dict(os.environ, TMF_PYTHON=sys.executable)
    start = time.monotonic()
    proc = subprocess.Popen(["bash", str(SLURM_SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=int(os.environ.get("TMF_SLURM_TEST_TIMEOUT", "2400")))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script's trap stops the daemons it started
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"run_slurm_test.sh timed out after {time.monotonic() - start:.0f} s:\n{out[-6000:]}")
    if proc.returncode == 77:
        pytest.skip("SLURM is missing and cannot be installed here")
    assert proc.returncode == 0, out[-8000:]
    assert "PASS" in out


# ------------------------------------------------------------------ the SLURM test's audit (tests/slurm/audit.py)


def load_audit():
    spec = importlib.util.spec_from_file_location("tmf_slurm_audit", REPO / "tests" / "slurm" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMK_LOG = """
localrule generate:
    output: data/raw
    jobid: 4
rule pretrain:
    input: data/raw
    jobid: 3
    resources: mem_mb=1
Job 3 has been submitted with SLURM jobid 11 (log: x).
rule evaluate:
    jobid: 2
Job 2 has been submitted with SLURM jobid 12 (log: y).
Job 2 has been submitted with SLURM jobid 13 (log: y).
"""
JOBCOMP = """JobId=11 UserId=root(0) Name=abc JobState=COMPLETED Partition=debug ExitCode=0:0
JobId=12 UserId=root(0) Name=abc JobState=OUT_OF_MEMORY Partition=debug ExitCode=0:125
JobId=13 UserId=root(0) Name=abc JobState=COMPLETED Partition=debug ExitCode=0:0
"""


def test_audit_jobs(tmp_path):
    audit = load_audit()
    for sid, rule in (("11", "pretrain"), ("12", "evaluate"), ("13", "evaluate")):
        log = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / "w" / f"{sid}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
    # a retried job passes when its last attempt completed
    assert audit.check_jobs("slurm", SMK_LOG, JOBCOMP, tmp_path, ["pretrain", "evaluate"]) == []
    assert audit.check_jobs("slurm", SMK_LOG, JOBCOMP, tmp_path, ["generate"])  # generate ran locally
    failed = JOBCOMP.replace("JobId=13 UserId=root(0) Name=abc JobState=COMPLETED", "JobId=13 UserId=root(0) "
                             "Name=abc JobState=FAILED")
    assert any("ended FAILED" in p for p in audit.check_jobs("slurm", SMK_LOG, failed, tmp_path, []))
    unsubmitted = SMK_LOG.replace("Job 3 has been submitted with SLURM jobid 11 (log: x).\n", "")
    assert any("no SLURM job id" in p for p in audit.check_jobs("slurm", unsubmitted, JOBCOMP, tmp_path, []))
    missing = "\n".join(JOBCOMP.splitlines()[1:])
    assert any("missing from the jobcomp" in p for p in audit.check_jobs("slurm", SMK_LOG, missing, tmp_path, []))


def test_audit_compare(tmp_path):
    audit = load_audit()
    a, b = tmp_path / "local", tmp_path / "slurm"
    for run, secs, loss in ((a, 1.5, 0.25), (b, 9.0, 0.25)):
        (run / "results" / "x").mkdir(parents=True)
        (run / "results" / "x" / "metrics.json").write_text(json.dumps({"loss": loss, "seconds": secs}))
        (run / "results" / "x" / "history.csv").write_text(f"step,loss,images_per_s\n1,{loss},{secs}\n")
        (run / "results" / "x" / "a.npy").write_bytes(b"same")
        (run / "logs").mkdir()
        (run / "logs" / "x.log").write_text(str(secs))  # logs are not outputs
    assert audit.compare_runs(a, b)[0] == []
    (b / "results" / "x" / "metrics.json").write_text(json.dumps({"loss": 0.5, "seconds": 1.5}))
    (b / "results" / "x" / "a.npy").write_bytes(b"diff")
    problems = audit.compare_runs(a, b)[0]
    assert any("metrics.json" in p for p in problems) and any("a.npy" in p for p in problems)
    (b / "results" / "x" / "history.csv").unlink()
    assert any("history.csv: missing" in p for p in audit.compare_runs(a, b)[0])


def test_audit_torch_files_compared_by_content(tmp_path):
    torch = pytest.importorskip("torch")
    audit = load_audit()
    state = {"arch": "resnet18", "state_dict": {"w": torch.arange(4.0)}, "elapsed_s": 1.0}
    torch.save(state, tmp_path / "a.pt")
    torch.save(dict(state, elapsed_s=7.0), tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    assert audit._torch_equal(tmp_path / "a.pt", tmp_path / "b.pt")
    torch.save(dict(state, state_dict={"w": torch.arange(4.0) + 1e-6}), tmp_path / "c.pt")
    assert not audit._torch_equal(tmp_path / "a.pt", tmp_path / "c.pt")


def test_audit_checkpoints_compared_by_the_state_their_digest_covers(tmp_path):
    torch = pytest.importorskip("torch")
    from tmf.ssl.checkpoint import save_checkpoint

    audit = load_audit()
    state = {"model": {"w": torch.arange(4.0)}, "history": [{"step": 1, "loss": 0.5, "images_per_s": 9.0}],
             "elapsed_s": 1.0}
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "b.pt", dict(state, elapsed_s=7.0,
                                            history=[{"step": 1, "loss": 0.5, "images_per_s": 3.0}]))
    assert audit._torch_equal(tmp_path / "a.pt", tmp_path / "b.pt")  # only timing differs (and so the digest)
    save_checkpoint(tmp_path / "c.pt", dict(state, model={"w": torch.arange(4.0) + 1e-6}))
    assert not audit._torch_equal(tmp_path / "a.pt", tmp_path / "c.pt")


def test_audit_dvc_files_compared_by_what_they_track(tmp_path):
    audit = load_audit()
    a, b = tmp_path / "local", tmp_path / "slurm"
    for run, md5 in ((a, "0" * 32), (b, "f" * 32)):
        (run / "results").mkdir(parents=True)
        (run / "results" / "x.dvc").write_text(f"outs:\n- md5: {md5}.dir\n  size: 10\n  nfiles: 3\n  hash: md5\n"
                                               "  path: x\n")
    problems, notes = audit.compare_runs(a, b)
    assert problems == [] and any("x.dvc" in n for n in notes)
    (b / "results" / "x.dvc").write_text("outs:\n- md5: 1.dir\n  size: 10\n  nfiles: 4\n  hash: md5\n  path: x\n")
    assert any("x.dvc" in p for p in audit.compare_runs(a, b)[0])
