# parle_hpc -- the two commands of the README, and helpers.
#   make demo    set up .venv (and Open MPI when root), then train the offline demo
#   make test    the same set-up plus Horovod (built for this torch) and parallel h5py,
#                then the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
NPROC  ?= 3
PYTEST_ARGS ?=

.PHONY: setup horovod h5py-mpi demo test unit clean help bench bench-quick

help:
	@echo "make demo | make test | make unit | make horovod | make h5py-mpi | make clean"

setup:
	@bash scripts/setup_env.sh

# Horovod 0.28.1 patched for the C++ standard of the installed torch (about 3 min once;
# NCCL GPU ops when a CUDA toolkit is found). Idempotent.
horovod: setup
	@bash scripts/build_horovod.sh --python $(PY)

# h5py rebuilt against Debian's parallel HDF5 (driver='mpio'); about 2 min once. Idempotent.
h5py-mpi: setup
	@bash scripts/build_h5py_mpi.sh --python $(PY)

demo: setup
	$(VENV)/bin/parle-train --nproc $(NPROC) --config configs/demo.yaml

test: setup horovod h5py-mpi
	PARLE_REQUIRE_HOROVOD=1 PARLE_REQUIRE_H5PY_MPI=1 $(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache

# Benchmarks -> docs/benchmarks.md (full mode, with Horovod and parallel h5py built). QUICK=1,
# or bench-quick, is the CI smoke mode: every benchmark at tiny sizes in under 2 minutes,
# results in benchmarks/results/quick/ only (docs/ untouched).
bench: setup $(if $(QUICK),,horovod h5py-mpi)
	$(PY) -m benchmarks $(if $(QUICK),--quick)

bench-quick: setup
	$(PY) -m benchmarks --quick
