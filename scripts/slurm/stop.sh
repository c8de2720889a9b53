#!/usr/bin/env bash
# Stop the one-node SLURM that scripts/slurm/start.sh DIR started: cancel its jobs, then end
# slurmd, slurmctld and munged (if start.sh started it) by the PIDs recorded in DIR/run/,
# never by process name, and remove the /etc/slurm/slurm.conf (and gres.conf) it wrote for DIR.
# Leaves nothing of them running; safe to run twice.
# Usage: scripts/slurm/stop.sh [DIR]     (DIR default: /var/spool/rbl-slurm)
set -uo pipefail

DIR="${1:-/var/spool/rbl-slurm}"
[ -d "$DIR" ] || { echo "nothing to stop: no $DIR"; exit 0; }
DIR="$(cd "$DIR" && pwd)"
export SLURM_CONF=/etc/slurm/slurm.conf
export PATH="$PATH:/usr/sbin:/sbin"
status=0

# The process of a pid file, if it is still that program (a pid may have been reused).
pid_of() {
    local file="$DIR/run/$1.pid" pid
    [ -s "$file" ] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ] || return 1
    echo "$pid"
}

# Cancel jobs still queued or running, so that no job step outlives the daemons.
if pid_of slurmctld >/dev/null && [ -f "$SLURM_CONF" ]; then
    jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        echo "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
            sleep 1
        done
    fi
fi

# Every descendant of a pid (slurmctld's slurmscriptd, slurmd's slurmstepd ...).
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# True once all the given pids are gone, waiting up to 10 s; the survivors are left in $left.
wait_gone() {
    local pid
    for _ in $(seq 100); do
        left=""
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left="$left $pid"; done
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    return 1
}

# SIGTERM, then SIGKILL after 10 s; true when all the given pids are gone.
end_pids() {
    kill -TERM "$@" 2>/dev/null
    wait_gone "$@" && return 0
    echo "pids$left ignored SIGTERM for 10 s: SIGKILL"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null
    wait_gone "$@"
}

for name in slurmd slurmctld munged; do
    pid="$(pid_of "$name")" || { rm -f "$DIR/run/$name.pid"; continue; }
    children="$(descendants "$pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    if end_pids "$pid" && { [ -z "${children// /}" ] || end_pids $children; }; then
        echo "stopped $name (pid $pid${children:+; its processes $children})"
        rm -f "$DIR/run/$name.pid"
    else
        echo "error: $name (pid $pid) or one of its processes ($children) still running" >&2
        status=1
    fi
done

# The slurm.conf that start.sh wrote for this DIR goes too (a copy stays in DIR).
for file in "$SLURM_CONF" "$(dirname "$SLURM_CONF")/gres.conf"; do
    if [ $status -eq 0 ] && [ -f "$file" ] && [ "$(head -n 1 "$file")" = "# Written by scripts/slurm/start.sh for $DIR" ]; then
        rm -f "$file"
        echo "removed $file"
    fi
done
exit $status
