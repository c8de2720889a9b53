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
"$(dirname "$0")/apt_install.sh" "${packages[@]}"
echo "installed: ${packages[*]}"
