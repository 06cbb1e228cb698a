#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by up.sh (by PID file: slurmd, slurmctld, munged).
set -uo pipefail
DIR="${REINITLAB_SLURM_DIR:-/tmp/reinitlab-slurm}"
stop() {  # stop PIDFILE: TERM, then wait up to 5 s
  local pidfile="$1" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
stop /run/munge/munged.pid
rm -f "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
echo "SLURM stopped"
