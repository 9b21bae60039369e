#!/usr/bin/env bash
# Start a throw-away single-node SLURM (munged + slurmctld + slurmd) on this machine, for tests
# of profiles/slurm. No systemd: every daemon is started by hand with its config, state, spool,
# sockets, pid files and logs under one temporary folder, so tools/slurm/stop.sh can stop exactly
# what was started. Outside that folder only /etc/slurm/slurm.conf is written: a link to the
# folder's config, made when absent and removed by stop.sh (why: below).
#
# Needs root (slurmd launches jobs as the submitting user) and Debian's packages:
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
#
# Usage: eval "$(tools/slurm/start.sh [DIR])"   # prints `export SLURM_CONF=...` and the folder
#        tools/slurm/stop.sh DIR
# The node advertises one fake GPU (gres gpu:1 on /dev/null) so GPU requests can be scheduled and
# checked with `scontrol show job`; nothing runs on a real GPU.
set -euo pipefail

DIR=${1:-$(mktemp -d /tmp/pinnacle-slurm.XXXXXX)}
mkdir -p "$DIR"/{state,spool,log,munge}
# munged refuses key and socket folders that others can write to.
chmod 700 "$DIR" "$DIR/munge"
DIR=$(cd "$DIR" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
# A step that fails half-way stops what was already started (logs kept in DIR).
trap 'KEEP=1 "$HERE/stop.sh" "$DIR" >&2' ERR
HOST=$(hostname -s)
CPUS=$(nproc)
# Memory the node offers: what the machine has, less 512 MB, so a 4000 MB request fits on a laptop.
MEM_MB=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 512 ))
# Ports: free ones, so a second test cluster (or a real slurmd) on this machine does not clash.
read -r CTLD_PORT SLURMD_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

for bin in munged mungekey slurmctld slurmd sbatch; do
    command -v "$bin" >/dev/null || PATH=$PATH:/usr/sbin
    command -v "$bin" >/dev/null || { echo "start.sh: $bin not found (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 2; }
done

# Inside a job the plugin's jobstep executor runs the rule with `srun`, after removing every
# SLURM_* variable but the job's ids (snakemake-executor-plugin-slurm-jobstep 0.6.1), SLURM_CONF
# included: that srun only finds the default /etc/slurm/slurm.conf. Link it there, and only when
# nothing is there (a machine with its own SLURM is left alone: this script then stops).
ETC_CONF=/etc/slurm/slurm.conf
# A link left by a test cluster whose folder is gone (a killed test) is stale: replace it.
if [ -L "$ETC_CONF" ] && [ ! -e "$ETC_CONF" ]; then
    rm -f "$ETC_CONF"
fi
if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
    if [ "$(readlink "$ETC_CONF" || true)" != "$DIR/slurm.conf" ]; then
        echo "start.sh: $ETC_CONF exists (a real SLURM, or another test cluster); not starting one" >&2
        rmdir "$DIR"/{state,spool,log,munge} "$DIR" 2>/dev/null || true  # only what this run made, if empty
        exit 3
    fi
else
    mkdir -p /etc/slurm
    ln -s "$DIR/slurm.conf" "$ETC_CONF"
    echo "$ETC_CONF" > "$DIR/etc_link"
fi

mungekey --create --keyfile="$DIR/munge/munge.key" --force
chmod 400 "$DIR/munge/munge.key"
munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed"

cat > "$DIR/slurm.conf" <<CONF
# Single-node test cluster written by tools/slurm/start.sh.
ClusterName=pinnacletest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers and CI runners: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour: without slurmdbd that is the only
# job history, and the executor plugin only trusts squeue for status when MinJobAge is long.
MinJobAge=3600
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF
cat > "$DIR/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
CONF

export SLURM_CONF=$DIR/slurm.conf
slurmctld -i
slurmd -N "$HOST"

# Ready when the node is idle in both partitions.
for _ in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -q '^idle'; then
        trap - ERR
        echo "export SLURM_CONF=$SLURM_CONF"
        echo "export PINNACLE_SLURM_DIR=$DIR"
        exit 0
    fi
    sleep 0.5
done
echo "start.sh: node did not become idle; logs in $DIR/log" >&2
sinfo -N -l >&2 || true
tail -n 20 "$DIR"/log/*.log >&2 || true
KEEP=1 "$HERE/stop.sh" "$DIR" >&2 || true
exit 1
