#!/usr/bin/env bash
# Stop the daemons tools/slurm/start.sh started in DIR (by their pid files, never by name, so a
# real cluster or another test's daemons on this machine are left alone), then delete DIR unless
# KEEP=1 (its log/ explains a failed test).
set -uo pipefail
DIR=${1:?usage: stop.sh DIR}
[ -f "$DIR/slurm.conf" ] || { echo "stop.sh: $DIR is not a start.sh folder" >&2; exit 2; }
export SLURM_CONF=$DIR/slurm.conf
# Cancel what is still queued, so slurmd has no job steps left behind.
scancel --full --quiet "--user=$(id -un)" 2>/dev/null || true
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
# The /etc/slurm/slurm.conf link start.sh made, if it still points here.
if [ -s "$DIR/etc_link" ]; then
    link=$(cat "$DIR/etc_link")
    [ "$(readlink "$link" || true)" = "$DIR/slurm.conf" ] && rm -f "$link"
fi
[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
exit 0
