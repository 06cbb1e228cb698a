#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine (Debian 12, no systemd) for the
# `slurm` tests: installs SLURM 22.05 + munge if missing, writes /etc/slurm/slurm.conf, starts
# munged, slurmctld and slurmd by hand, and puts a `sacct` stand-in on PATH (no accounting
# database here; submitit needs sacct to see that a job died). Run as root. Idempotent.
#   scripts/slurm/up.sh      then   export PATH="$REINITLAB_SLURM_DIR/bin:$PATH"
#   scripts/slurm/down.sh    stops everything again
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${REINITLAB_SLURM_DIR:-/tmp/reinitlab-slurm}"
CPUS="${REINITLAB_SLURM_CPUS:-$(nproc)}"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi

"$HERE/down.sh" >/dev/null 2>&1 || true
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/bin" /etc/slurm /run/munge /var/log/munge /var/lib/munge
cat > /etc/slurm/slurm.conf <<CONF
# written by reinitlab scripts/slurm/up.sh
ClusterName=reinitlab
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=3600
# scancel: SIGKILL 5 s after SIGTERM (submitit ignores SIGTERM), not 30 s
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

# munge: its key comes with the package; the daemon runs as user munge
test -s /etc/munge/munge.key || mungekey --create
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged

slurmctld -c
slurmd -N localhost

install -m 0755 "$HERE/sacct" "$DIR/bin/sacct"

for _ in $(seq 1 50); do
  if sinfo -h -o %T 2>/dev/null | grep -q -E '^idle'; then
    echo "SLURM is up (state in $DIR). Add the sacct stand-in: export PATH=\"$DIR/bin:\$PATH\""
    exit 0
  fi
  sleep 0.2
done
echo "SLURM did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
sinfo >&2 || true
exit 1
