#!/usr/bin/env bash
# Install the programs that render the realistic benchmark corpora (src/rbl/corpora.py) from
# Debian/Ubuntu packages: fluidsynth and the FluidR3 General MIDI soundfont (`instruments`),
# espeak-ng (`speech`). Idempotent: installs only what is missing. Needs root (apt-get).
# Usage: scripts/install_corpus_tools.sh
set -euo pipefail

SOUNDFONT=/usr/share/sounds/sf2/FluidR3_GM.sf2
packages=()
command -v fluidsynth >/dev/null 2>&1 || packages+=(fluidsynth)
[ -f "$SOUNDFONT" ] || packages+=(fluid-soundfont-gm)
command -v espeak-ng >/dev/null 2>&1 || packages+=(espeak-ng)
if [ ${#packages[@]} -eq 0 ]; then
    echo "corpus tools are installed: fluidsynth, $SOUNDFONT, espeak-ng"
    exit 0
fi
echo "missing: ${packages[*]}; installing them"
if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing packages needs root (apt-get); run as root or install ${packages[*]} yourself" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install ${packages[*]} with this system's package manager" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq; then
    echo "error: apt-get update failed (no network to the Debian mirrors?)" >&2
    exit 3
fi
if ! apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
    echo "error: apt-get install ${packages[*]} failed" >&2
    exit 3
fi
echo "installed: ${packages[*]}"
