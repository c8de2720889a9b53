#!/usr/bin/env bash
# Install a one-node SLURM (slurmctld, slurmd, clients) and munge from Debian/Ubuntu packages.
# Idempotent: does nothing when every needed program is already there. Needs root (apt-get).
# Usage: scripts/slurm/install.sh
set -euo pipefail

needed=(slurmctld slurmd sbatch squeue sinfo scontrol scancel munged munge unmunge)
missing=()
for prog in "${needed[@]}"; do
    command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || missing+=("$prog")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm and munge are installed: $(slurmd -V 2>/dev/null || echo "?")"
    exit 0
fi
echo "missing: ${missing[*]}; installing slurm-wlm and munge"
if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing packages needs root (apt-get); run as root or install slurm-wlm and munge yourself" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install SLURM (slurmctld, slurmd, clients) and munge with this system's package manager" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -q; then
    echo "error: apt-get update failed (no network to the Debian mirrors?)" >&2
    exit 3
fi
if ! apt-get install -y -q slurm-wlm munge; then
    echo "error: apt-get install slurm-wlm munge failed" >&2
    exit 3
fi
echo "installed: $(slurmd -V)"
