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
"$(dirname "$0")/../apt_install.sh" slurm-wlm munge
echo "installed: $(slurmd -V)"
