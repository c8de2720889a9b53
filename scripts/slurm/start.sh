#!/usr/bin/env bash
# Start a one-node SLURM on this machine: munged, slurmctld, slurmd; wait until the node is idle.
#
# Usage: scripts/slurm/start.sh [DIR]     (DIR default: /var/spool/rbl-slurm; needs root)
#   /etc/slurm/slurm.conf  written from scripts/slurm/slurm.conf.in (this host's short name,
#                       CPUs=$(nproc), RealMemory a little under `free -m`, one default partition).
#                       It has to be there, not elsewhere with SLURM_CONF: Snakemake's job step
#                       drops every SLURM_* variable before it calls srun inside a job. An
#                       existing slurm.conf that this script did not write is never replaced.
#   DIR/ctld, DIR/d     slurmctld state and slurmd spool;  DIR/log/  daemon logs, jobcomp.log
#   DIR/run/*.pid       the PIDs that scripts/slurm/stop.sh DIR kills (and only those)
# Environment: SLURM_PARTITION (default: main), SLURM_CTLD_PORT (6817), SLURMD_PORT (6818),
#              SLURM_START_TIMEOUT (seconds to wait for an idle node, default 90),
#              SLURM_FAKE_GPU (default 0; 1: give the node one gres/gpu backed by /dev/null, written
#              to /etc/slurm/gres.conf, so that a test sees GPU requests scheduled; no real GPU).
# Rerunning it while its daemons run does nothing but check that the node is idle.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:-/var/spool/rbl-slurm}"
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (slurmd and munged need it)" >&2; exit 1; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PARTITION="${SLURM_PARTITION:-main}"
TIMEOUT="${SLURM_START_TIMEOUT:-90}"
export SLURM_CONF=/etc/slurm/slurm.conf
MARKER="# Written by scripts/slurm/start.sh for $DIR"

die() {
    echo "error: $*" >&2
    for log in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
        [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 20 "$log" >&2; }
    done
    echo "(scripts/slurm/stop.sh $DIR ends whatever was started)" >&2
    exit 1
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

for prog in slurmctld slurmd sinfo scontrol munged munge unmunge runuser; do
    command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || die "$prog not found: run scripts/slurm/install.sh"
done
export PATH="$PATH:/usr/sbin:/sbin"

HOST="$(hostname -s)"
# slurmctld and slurmd look the short name up: make sure it resolves.
if ! getent hosts "$HOST" >/dev/null; then
    echo "127.0.0.1 $HOST" >>/etc/hosts
    echo "added '127.0.0.1 $HOST' to /etc/hosts"
fi

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state="" resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state="$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)"
        case "$state" in
            idle) echo "SLURM is up: node $HOST idle in partition $PARTITION (config $SLURM_CONF)"; return 0 ;;
            down* | drain* | fail*)
                if [ $resumed -eq 0 ]; then
                    scontrol update nodename="$HOST" state=resume 2>/dev/null || true
                    resumed=1
                fi ;;
        esac
        sleep 1
    done
    die "node $HOST not idle after ${TIMEOUT}s (state: '${state:-none}'); see $DIR/log/"
}

mkdir -p "$DIR/ctld" "$DIR/d" "$DIR/log" "$DIR/run"

if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid"; then
    echo "slurmctld and slurmd already running from $DIR"
    wait_idle
    exit 0
fi

# One such cluster per machine: clients and job steps all read /etc/slurm/slurm.conf.
if [ -f "$SLURM_CONF" ]; then
    other="$(head -n 1 "$SLURM_CONF" | sed -n 's|^# Written by scripts/slurm/start.sh for ||p')"
    if [ -n "$other" ] && [ "$other" != "$DIR" ] && [ -s "$other/run/slurmctld.pid" ] \
        && [ "$(cat "/proc/$(cat "$other/run/slurmctld.pid")/comm" 2>/dev/null)" = slurmctld ]; then
        echo "error: another one-node SLURM from scripts/slurm/start.sh runs from $other; stop it first: scripts/slurm/stop.sh $other" >&2
        exit 1
    fi
fi

# --- munge: key, ownership, daemon as user munge -------------------------------------------
install -d -o munge -g munge -m 700 /etc/munge
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 711 /var/lib/munge
install -d -o munge -g munge -m 700 /var/log/munge
key=/etc/munge/munge.key
if [ ! -s "$key" ] || [ "$(stat -c %s "$key")" -lt 32 ]; then
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    echo "wrote a new munge key $key"
fi
chown munge:munge "$key"
chmod 400 "$key"
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "munged already running (not started here, so stop.sh leaves it alone)"
    rm -f "$DIR/run/munged.pid"
else
    # No working daemon: a socket or pid file left behind is stale, hence --force.
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    [ -s /run/munge/munged.pid ] || die "munged wrote no pid file; see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$DIR/run/munged.pid"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munge -n | unmunge fails; see /var/log/munge/munged.log"
    echo "munged started (pid $(cat "$DIR/run/munged.pid"))"
fi

# --- slurm.conf from the template -------------------------------------------------------------
CPUS="$(nproc)"
MEM_TOTAL="$(free -m | awk '/^Mem:/ {print $2}')"
MEM=$((MEM_TOTAL * 95 / 100))
DEFMEM=$((MEM / CPUS))
GRES=""
[ "${SLURM_FAKE_GPU:-0}" = 1 ] && GRES="Gres=gpu:1 "
GRES_CONF="$(dirname "$SLURM_CONF")/gres.conf"
for file in "$SLURM_CONF" "$GRES_CONF"; do
    if [ -e "$file" ] && ! head -n 1 "$file" | grep -q "^# Written by scripts/slurm/start.sh"; then
        die "$file exists and was not written by this script: not replacing it (move it away to go on)"
    fi
done
mkdir -p "$(dirname "$SLURM_CONF")"
rm -f "$GRES_CONF"
if [ -n "$GRES" ]; then
    printf '%s\n%s\n' "$MARKER" "NodeName=$HOST Name=gpu File=/dev/null" >"$GRES_CONF"
fi
{
    echo "$MARKER"
    sed -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM@|$MEM|g" -e "s|@DEFMEM@|$DEFMEM|g" \
        -e "s|@DIR@|$DIR|g" -e "s|@PARTITION@|$PARTITION|g" -e "s|@GRES@|$GRES|g" \
        -e "s|@CTLD_PORT@|${SLURM_CTLD_PORT:-6817}|g" -e "s|@SLURMD_PORT@|${SLURMD_PORT:-6818}|g" \
        "$HERE/slurm.conf.in"
} >"$DIR/slurm.conf"
cp "$DIR/slurm.conf" "$SLURM_CONF"
echo "wrote $SLURM_CONF: node $HOST, CPUs=$CPUS, RealMemory=$MEM MB, ${GRES:+$GRES(fake), }partition $PARTITION"

# --- daemons (both fork into the background and write their pid files) ----------------------
rm -f "$DIR/run/slurmctld.pid" "$DIR/run/slurmd.pid"
slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start"
for _ in $(seq 100); do [ -s "$DIR/run/slurmctld.pid" ] && break; sleep 0.1; done
alive "$DIR/run/slurmctld.pid" || die "slurmctld is not running"
slurmd -f "$SLURM_CONF" || die "slurmd did not start"
for _ in $(seq 100); do [ -s "$DIR/run/slurmd.pid" ] && break; sleep 0.1; done
alive "$DIR/run/slurmd.pid" || die "slurmd is not running"
echo "slurmctld (pid $(cat "$DIR/run/slurmctld.pid")) and slurmd (pid $(cat "$DIR/run/slurmd.pid")) started"
wait_idle
