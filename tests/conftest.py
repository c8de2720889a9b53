import sys
from pathlib import Path

# tests/ for the slow reference loops (loops.py); benchmarks/ for the numpy port of the published
# VGGish frontend (torchvggish_style.py), which is both a test reference and a benchmark baseline.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parent.parent / "benchmarks"))
