# Start and stop a throw-away one-node SLURM cluster on 127.0.0.1 (sourced by run_slurm_test.sh).
#
#   source tests/slurm/slurm_cluster.sh
#   slurm_install              # apt-get install slurm-wlm munge when slurmctld is missing (needs root)
#   slurm_start DIR            # munged + slurmctld + slurmd with every file under DIR; exports SLURM_CONF
#   ...                        # sbatch / squeue / snakemake --executor slurm talk to it
#   slurm_stop                 # stops the three daemons by PID (also safe to call twice)
#
# Facts this relies on (Debian 12, Slurm 22.05): the daemons run without systemd in the foreground; the node
# name must match slurm.conf (the machine's host name does not matter); RealMemory above the real memory drains
# the node; without DefMemPerCPU one job takes the whole node. munged gets its own key and socket, and slurmctld
# / slurmd their own ports, so nothing on the host is touched and two clusters can coexist.
# Accounting is off: completed jobs are recorded by jobcomp/filetxt in $SLURM_DIR/jobcomp.txt (one line per
# job: JobId, Name, JobState, ExitCode), which is what the test reads to prove that a job went through SLURM.

SLURM_PIDS=()

slurm_log() { echo "[slurm-test $(date +%H:%M:%S)] $*" >&2; }

slurm_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        slurm_log "slurm-wlm/munge missing and not root: cannot install them"
        return 77
    fi
    slurm_log "installing slurm-wlm and munge (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

_free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

slurm_start() {
    local dir=$1
    local cpus=${SLURM_TEST_CPUS:-$(nproc)}
    local total_mb real_mb
    total_mb=$(free -m | awk '/^Mem:/ {print $2}')
    real_mb=$((total_mb - 1024))
    mkdir -p "$dir"/{etc,munge,state,spool,log,run}
    chmod 755 "$dir"
    SLURM_DIR=$dir

    # munge: own key, socket, pid and log; runs as the munge user, which owns its folder.
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chown -R munge:munge "$dir/munge"
    chmod 755 "$dir/munge"  # munged wants the socket's folder searchable by all, writable only by itself
    chmod 400 "$dir/munge/munge.key"
    if ! setpriv --reuid=munge --regid=munge --init-groups test -x "$dir/munge"; then
        slurm_log "the munge user cannot reach $dir/munge: make its parent folders searchable (chmod o+x)"
        return 1
    fi
    setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" >"$dir/munge/munged.out" 2>&1 &
    SLURM_PIDS+=($!)

    local ctld_port slurmd_port
    ctld_port=$(_free_port)
    slurmd_port=$(_free_port)
    cat > "$dir/etc/slurm.conf" <<EOF
ClusterName=tmftest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/etc/slurm.conf
    # snakemake-executor-plugin-slurm-jobstep (0.6.1) runs each job's command with `srun` after removing
    # SLURM_* variables other than the job's identity, SLURM_CONF included, so inside a job srun would look
    # for /etc/slurm/slurm.conf. Real clusters keep their configuration there (or run configless); this
    # cluster keeps it under $dir, so jobs get an srun that knows where it is.
    mkdir -p "$dir/bin"
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" > "$dir/bin/srun"
    chmod 755 "$dir/bin/srun"
    export PATH="$dir/bin:$PATH"

    local i
    for i in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.2; done
    if [ ! -S "$dir/munge/munge.socket" ]; then
        slurm_log "munged did not start:"; cat "$dir/munge/munged.out" >&2 || true
        return 1
    fi
    slurmctld -D -i -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
    SLURM_PIDS+=($!)
    for i in $(seq 50); do timeout 5 scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
    slurmd -D -N localhost -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
    SLURM_PIDS+=($!)
    for i in $(seq 60); do
        case "$(timeout 5 sinfo -h -N -o %T 2>/dev/null)" in idle*) break ;; esac
        sleep 0.5
    done
    if ! timeout 5 sinfo -h -N -o %T 2>/dev/null | grep -q '^idle'; then
        slurm_log "the node did not come up: sinfo says '$(timeout 5 sinfo -h -N -o '%T %E' 2>&1)'"
        tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
        return 1
    fi
    slurm_log "cluster up: $cpus CPUs, ${real_mb} MB, ports $ctld_port/$slurmd_port, conf $SLURM_CONF"
}

slurm_stop() {
    local pid
    # Jobs of this cluster still queued or running (a failed test) go first.
    if [ ${#SLURM_PIDS[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
        scancel --quiet --user "$(id -un)" 2>/dev/null || true
        sleep 1
    fi
    # slurmd, slurmctld, munged: the reverse of their start order.
    for ((i = ${#SLURM_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SLURM_PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SLURM_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SLURM_PIDS=()
}
