# parle_hpc -- the two commands of the README, and helpers.
#   make demo    set up .venv (and Open MPI when root), then train the offline demo
#   make test    the same set-up, then the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
NPROC  ?= 3
PYTEST_ARGS ?=

.PHONY: setup demo test unit clean help

help:
	@echo "make demo | make test | make unit | make clean"

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(VENV)/bin/parle-train --nproc $(NPROC) --config configs/demo.yaml

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
