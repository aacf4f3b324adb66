#!/usr/bin/env bash
# Run the workflow through SLURM on a throw-away one-node cluster and check it against a local run.
#
#   tests/slurm/run_slurm_test.sh            # as root (installs slurm-wlm + munge with apt-get when missing)
#
# 1. installs Debian's slurm-wlm and munge if missing, starts munged, slurmctld and slurmd on 127.0.0.1
#    (tests/slurm/slurm_cluster.sh; every file under a temporary folder, daemons stopped on exit);
# 2. copies the repository once (tracked and untracked-but-not-ignored files) and runs the workflow on the
#    small test configuration in three copies of it: locally, through workflow/profiles/slurm
#    (snakemake-executor-plugin-slurm) and through workflow/profiles/cluster-generic (sbatch via submit.py,
#    status via status.py);
# 3. checks that every job that is not a local rule went through sbatch and completed (the Snakemake log's job
#    ids against the job completion records of slurmctld) and that the outputs equal those of the local run
#    (tests/slurm/audit.py).
#
# Environment:
#   TMF_SLURM_TEST_CONFIG    configfile, relative to the repository (default: tests/slurm/tiny.yaml, every stage
#                            of the embedded synthetic data at its smallest: ~20 jobs, ~4 min on one CPU)
#   TMF_SLURM_TEST_TARGETS   targets (default: the workflow's default target)
#   TMF_SLURM_TEST_PROFILES  profiles to run (default: "slurm cluster-generic")
#   TMF_SLURM_TEST_EXPECT_REMOTE  rules that must run as SLURM jobs (default: pretrain,evaluate)
#   TMF_SLURM_TEST_SOURCE    the workflow to copy (default: this repository)
#   TMF_SLURM_TEST_KEEP=1    keep the temporary folder (its path is printed)
#   TMF_PYTHON               the Python with snakemake and tmf (default: <repo>/.venv/bin/python, else python3)
# Exit status: 0 passed, 1 failed, 77 skipped (SLURM missing and cannot be installed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRC=$(cd "${TMF_SLURM_TEST_SOURCE:-$ROOT}" && pwd)
PY=${TMF_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
# Jobs inherit this PATH (sbatch --export=ALL), so they find the same snakemake, python and tmf.
export PATH="$(dirname "$PY"):$PATH"
PROFILES=${TMF_SLURM_TEST_PROFILES:-slurm cluster-generic}
CONFIG=${TMF_SLURM_TEST_CONFIG:-}
if [ -z "$CONFIG" ] && [ -f "$SRC/tests/slurm/tiny.yaml" ]; then CONFIG=tests/slurm/tiny.yaml; fi
read -r -a TARGETS <<<"${TMF_SLURM_TEST_TARGETS:-}"

# shellcheck source=tests/slurm/slurm_cluster.sh
source "$HERE/slurm_cluster.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tmf-slurm-test.XXXXXX")
chmod 711 "$WORK"  # munged runs as the munge user and must reach its folder inside
cleanup() {
    local rc=$?
    slurm_stop
    # A Snakemake killed half-way leaves a lock behind; the copies are ours, so drop it.
    rm -rf "$WORK"/run-*/.snakemake/locks 2>/dev/null || true
    if [ "${TMF_SLURM_TEST_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
        slurm_log "files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

slurm_install || exit $?

copy_tree() {  # copy_tree DEST: the workflow as a fresh clone would have it, plus uncommitted files
    mkdir -p "$1"
    if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$SRC" && git ls-files -z --cached --others --exclude-standard \
            | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$1"
    else
        (cd "$SRC" && tar --exclude=./.venv --exclude=./.snakemake --exclude=./.git -cf - .) | tar -xf - -C "$1"
    fi
}

SMK=("$PY" -m snakemake --printshellcmds --nocolor)
[ -n "$CONFIG" ] && SMK+=(--configfile "$CONFIG")
# Same thread counts everywhere (1), so CPU results can be compared bit for bit.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# What the profiles read (docs/cluster.md): a node of this test has no GPU and few CPUs and little memory.
export TMF_SLURM_PARTITION=debug TMF_SLURM_ACCOUNT="" TMF_SLURM_GPUS=0 TMF_SLURM_JOBS=4 TMF_SLURM_CORES=2
export TMF_SLURM_CPUS=1 TMF_SLURM_MEM_MB=1500 TMF_SLURM_RUNTIME=30
export TMF_SLURM_GPU_CPUS=1 TMF_SLURM_GPU_MEM_MB=3000 TMF_SLURM_GPU_RUNTIME=60
export TMF_CLUSTER_SCHEDULER=slurm

t0=$(date +%s)
# One snapshot of the source, so that every run sees the same files even if the tree changes meanwhile.
copy_tree "$WORK/source"
slurm_log "local reference run"
cp -a "$WORK/source" "$WORK/run-local"
(cd "$WORK/run-local" && "${SMK[@]}" --cores 1 "${TARGETS[@]}") >"$WORK/local.log" 2>&1 \
    || { tail -n 60 "$WORK/local.log"; slurm_log "FAIL: the local run failed"; exit 1; }
slurm_log "local run done in $(($(date +%s) - t0)) s"

slurm_start "$WORK/cluster"

status=0
for profile in $PROFILES; do
    t1=$(date +%s)
    run=$WORK/run-$profile
    cp -a "$WORK/source" "$run"
    extra=()
    case $profile in
        slurm)
            # Accounting is off here, so job states come from squeue (kept MinJobAge=300 s after the end);
            # with sacct and no accounting the plugin waits forever (docs/cluster.md).
            extra=(--slurm-status-command squeue --slurm-init-seconds-before-status-checks 2
                   --slurm-keep-successful-logs) ;;
        cluster-generic)
            extra=(--seconds-between-status-checks 2) ;;
    esac
    slurm_log "run through workflow/profiles/$profile"
    if ! (cd "$run" && "${SMK[@]}" --profile "workflow/profiles/$profile" --local-cores 1 \
            --latency-wait 5 "${extra[@]}" "${TARGETS[@]}") >"$WORK/$profile.log" 2>&1; then
        tail -n 80 "$WORK/$profile.log"
        slurm_log "FAIL: the run through workflow/profiles/$profile failed"
        status=1
        continue
    fi
    slurm_log "$profile run done in $(($(date +%s) - t1)) s"
    "$PY" "$HERE/audit.py" jobs --executor "$profile" --log "$WORK/$profile.log" \
        --jobcomp "$WORK/cluster/jobcomp.txt" --workdir "$run" \
        --expect-remote "${TMF_SLURM_TEST_EXPECT_REMOTE:-pretrain,evaluate}" || status=1
    "$PY" "$HERE/audit.py" compare "$WORK/run-local" "$run" || status=1
done

if [ $status -eq 0 ]; then
    slurm_log "PASS in $(($(date +%s) - t0)) s (profiles: $PROFILES)"
else
    slurm_log "FAIL"
fi
exit $status
