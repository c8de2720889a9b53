# Set-up and entry points. `make demo` and `make test` install everything they need first.
PYTHON ?= python3
VENV ?= .venv
# The torch build to install: on this project's CI machines 2.13.0 comes from a local CPU wheel;
# elsewhere pip takes the matching build from PyPI (CUDA on Linux). Override, e.g. TORCH=torch.
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-rbl
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo instruments speech test lint clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	@echo; cat results/demo/summary.md

# The realistic benchmarks (src/rbl/corpora.py): install fluidsynth, the GM soundfont and espeak-ng
# (root, apt), render the corpus into resources/<name>/, run the workflow, print the results table.
instruments speech: setup
	scripts/install_corpus_tools.sh
	snakemake --workflow-profile workflow/profiles/default --cores $(CORES) --configfile config/$@.yaml
	@echo; cat results/$@/summary.md

test: setup
	python -m pytest

lint: setup
	ruff check .
	ruff format --check .
	snakemake --lint
	snakefmt --check Snakefile workflow/rules

clean-results:
	rm -rf results/demo .snakemake

# The SLURM test alone (tests/test_slurm.py; also part of `make test`): installs slurm-wlm and
# munge, starts a one-node SLURM (scripts/slurm/), runs the reduced demo on it through
# workflow/profiles/slurm, compares with a local run, stops SLURM. Needs root; fails, not skips.
.PHONY: slurm-test
slurm-test: setup
	$(BIN)/python -c "import snakemake_executor_plugin_slurm" 2>/dev/null || $(BIN)/pip install -q "snakemake-executor-plugin-slurm>=2.8"
	scripts/slurm/install.sh
	RBL_REQUIRE_SLURM=1 python -m pytest tests/test_slurm.py
