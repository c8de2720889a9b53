#!/usr/bin/env bash
# Install Debian/Ubuntu packages for the project's own scripts (scripts/slurm/install.sh,
# scripts/install_corpus_tools.sh): checks for root and apt-get, then apt-get update and install,
# each failure with a message naming what to do. Exit status 2: no root or no apt; 3: apt failed.
# Usage: scripts/apt_install.sh PACKAGE...
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 PACKAGE..." >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing packages needs root (apt-get); run as root or install $* yourself" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install $* with this system's package manager" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
    echo "error: apt-get update failed (no network to the Debian mirrors?)" >&2
    exit 3
fi
if ! apt-get install -y -qq "$@" >/dev/null; then
    echo "error: apt-get install $* failed" >&2
    exit 3
fi
