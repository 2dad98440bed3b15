#!/usr/bin/env bash
# build_h5py_mpi.sh -- rebuild h5py in a Python venv against the system's parallel
# (MPI) HDF5, so that h5py.get_config().mpi is True and driver='mpio' works.
#
# The h5py wheels on PyPI bundle a serial HDF5.  This script downloads the h5py
# sdist (by default the version already installed, so the pin is kept),
# installs its build requirements (Cython, numpy, pkgconfig, packaging,
# setuptools -- read from the sdist's pyproject.toml) plus mpi4py, then runs
#   CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-openmpi \
#     pip install --no-binary=h5py --no-build-isolation --no-cache-dir \
#                 --force-reinstall --no-deps h5py-<ver>.tar.gz
# and verifies it: get_config().mpi, and a real 2-rank `mpirun` job in which
# both ranks write their own row of one dataset in one file (driver='mpio'),
# then read it back (in parallel and serially).
#
# Usage:
#   scripts/build_h5py_mpi.sh [--python PATH] [--force] [--verify-only] [-h|--help]
#
#   --python PATH   Python interpreter of the target venv.  Default: $PYTHON,
#                   else $VIRTUAL_ENV/bin/python, else <repo>/.venv/bin/python,
#                   else `python3` on PATH.
#   --force         Rebuild even if h5py already reports mpi=True.
#   --verify-only   Skip the build; just run the verification.
#
# Environment variables honoured:
#   PYTHON                 interpreter (same as --python)
#   H5PY_VERSION           h5py version to build (default: the installed one,
#                          else the latest on PyPI)
#   HDF5_PKGCONFIG_NAME    pkg-config name of the parallel HDF5
#                          (default hdf5-openmpi; Debian: libhdf5-openmpi-dev)
#   MPICC                  MPI C compiler wrapper (default mpicc)
#   H5PY_FORCE_REBUILD=1   same as --force
#   H5PY_BUILD_LOG         log file (default /tmp/build_h5py_mpi-<date>.log)
#   TMPDIR                 where the temporary build dir is created
#
# Duration: ~2-5 min for a build on 2 cores (Cython + C compile of ~25
# modules), ~10 s for the verification; a few seconds when h5py is already
# MPI-enabled.
#
# Requirements: mpicc/mpirun (Debian: openmpi-bin libopenmpi-dev), the
# parallel HDF5 dev package (Debian: libhdf5-openmpi-dev, HDF5 >= 1.10.7 for
# h5py 3.12+), pkg-config, a C compiler, network access to PyPI.
#
# Running as root: `mpirun` refuses to run as root unless --allow-run-as-root
# is given (the script does that) or OMPI_ALLOW_RUN_AS_ROOT=1 and
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set.

set -euo pipefail

TAG="[build_h5py_mpi]"
T_START=$SECONDS

# log, warn, die, elapsed, run_logged, show_log_tail
source "$(dirname "${BASH_SOURCE[0]}")/build_common.sh"

# ---------------------------------------------------------------- arguments
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

PY_ARG=""
FORCE=${H5PY_FORCE_REBUILD:-0}
VERIFY_ONLY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) [[ $# -ge 2 ]] || die "--python needs an argument"; PY_ARG=$2; shift 2 ;;
        --python=*) PY_ARG=${1#--python=}; shift ;;
        --force) FORCE=1; shift ;;
        --verify-only) VERIFY_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# ---------------------------------------------------------------- interpreter / venv
if [[ -n "$PY_ARG" ]]; then PY=$PY_ARG
elif [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PY=$VIRTUAL_ENV/bin/python
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PY=$REPO_ROOT/.venv/bin/python
else PY=python3
fi
command -v "$PY" >/dev/null 2>&1 || die "python interpreter not found: $PY"
PY=$(command -v "$PY")
[[ "$PY" == /* ]] || PY="$(pwd)/$PY"
VENV=$("$PY" -c 'import sys; print(sys.prefix)')
if [[ "$("$PY" -c 'import sys; print(sys.prefix != sys.base_prefix)')" != True ]]; then
    warn "$PY is not inside a virtualenv (sys.prefix=$VENV); installing there anyway"
fi
export PATH="$VENV/bin:$PATH"
log "python: $PY  (venv: $VENV)"

h5py_mpi_status() {  # prints "<version> <mpi> <hdf5 version>" or nothing
    "$PY" -c 'import h5py; print(h5py.__version__, h5py.get_config().mpi, h5py.version.hdf5_version)' 2>/dev/null | tail -n 1 || true
}

# ---------------------------------------------------------------- verification
verify_install() {
    local out tdir mpi_args
    log "verify: h5py.get_config().mpi"
    out=$("$PY" -c '
import h5py, numpy
cfg = h5py.get_config()
print(f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, mpi={cfg.mpi}, numpy {numpy.__version__}")
assert cfg.mpi, "h5py.get_config().mpi is False"
assert "mpio" in h5py.registered_drivers(), "mpio driver not registered"
' 2>&1) || { printf '%s\n' "$out" >&2; die "h5py is not MPI-enabled"; }
    printf '%s\n' "$out" | sed "s/^/$TAG   /"

    tdir=$(mktemp -d "${TMPDIR:-/tmp}/h5py-mpi-verify.XXXXXX")
    cat >"$tdir/h5py_mpio_test.py" <<'EOF'
import sys
import numpy as np
from mpi4py import MPI
import h5py

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
assert size == 2, f"expected 2 ranks, got {size}"
fn = sys.argv[1]
ncol = 5

# Parallel write: every rank writes its own row of one dataset in one file.
with h5py.File(fn, "w", driver="mpio", comm=comm) as f:
    dset = f.create_dataset("data", (size, ncol), dtype="i8")
    dset[rank, :] = np.arange(ncol, dtype="i8") + 100 * rank
    coll = f.create_dataset("collective", (size, ncol), dtype="f8")
    with coll.collective:
        coll[rank, :] = float(rank) + 0.5
    f.attrs["nranks"] = size
comm.Barrier()

# Parallel read-back.
expected = np.array([np.arange(ncol) + 100 * r for r in range(size)])
with h5py.File(fn, "r", driver="mpio", comm=comm) as f:
    data = f["data"][...]
    coll = f["collective"][...]
    nranks = int(f.attrs["nranks"])
assert nranks == size, nranks
assert (data == expected).all(), data
assert (coll == np.array([[r + 0.5] * ncol for r in range(size)])).all(), coll
line = f"rank {rank}/{size}: mpio write+read OK data={data.tolist()}\n"
# Ranks share one stdout pipe and their writes can interleave, so success is
# recorded in a per-rank marker file; the printed line is informational.
with open(f"ok.{rank}", "w") as fh:
    fh.write(line)
import os
os.write(1, line.encode())
EOF
    mpi_args=(--oversubscribe -np 2 -x PATH)
    [[ $EUID -eq 0 ]] && mpi_args=(--allow-run-as-root "${mpi_args[@]}")
    [[ -n "${LD_LIBRARY_PATH:-}" ]] && mpi_args+=(-x LD_LIBRARY_PATH)
    log "verify: timeout 120 mpirun ${mpi_args[*]} $PY h5py_mpio_test.py test.h5"
    verify_two_ranks "$tdir" ok. "mpio write/read test" \
        timeout 120 mpirun "${mpi_args[@]}" "$PY" h5py_mpio_test.py "$tdir/test.h5"

    log "verify: serial read-back of the file written by both ranks"
    out=$("$PY" -c '
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    d = f["data"][...]
assert (d == np.array([np.arange(5), np.arange(5) + 100])).all(), d
print("serial read OK:", d.tolist())
' "$tdir/test.h5" 2>&1) || { printf '%s\n' "$out" >&2; rm -rf "$tdir"; die "serial read-back failed"; }
    printf '%s\n' "$out" | sed "s/^/$TAG   /"
    rm -rf "$tdir"
    log "verify: all checks passed"
}

if [[ "$VERIFY_ONLY" == 1 ]]; then
    verify_install
    log "done in $(elapsed)"
    exit 0
fi

# ---------------------------------------------------------------- idempotent fast path
read -r CUR_VER CUR_MPI CUR_HDF5 < <(h5py_mpi_status; echo) || true
if [[ "$FORCE" != 1 && "${CUR_MPI:-}" == True && ( -z "${H5PY_VERSION:-}" || "${H5PY_VERSION}" == "$CUR_VER" ) ]]; then
    log "h5py $CUR_VER is already MPI-enabled (HDF5 $CUR_HDF5); nothing to do (use --force to rebuild)"
    log "done in $(elapsed)"
    exit 0
fi
log "installed h5py: ${CUR_VER:-none} (mpi=${CUR_MPI:-n/a}, HDF5 ${CUR_HDF5:-n/a}); rebuilding against parallel HDF5"

# ---------------------------------------------------------------- tools / system HDF5
MPICC=${MPICC:-mpicc}
for tool in "$MPICC" mpirun pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev pkg-config)"
done
HDF5_PC=${HDF5_PKGCONFIG_NAME:-hdf5-openmpi}
pkg-config --exists "$HDF5_PC" \
    || die "pkg-config cannot find '$HDF5_PC' (Debian: apt-get install libhdf5-openmpi-dev; or set HDF5_PKGCONFIG_NAME)"
HDF5_SYS_VER=$(pkg-config --modversion "$HDF5_PC")
HDF5_INC=$(pkg-config --variable=includedir "$HDF5_PC" 2>/dev/null || true)
if ! grep -rqs 'define H5_HAVE_PARALLEL 1' $(pkg-config --cflags-only-I "$HDF5_PC" | sed 's/-I//g') "$HDF5_INC" 2>/dev/null; then
    die "HDF5 from pkg-config '$HDF5_PC' ($HDF5_SYS_VER) is not a parallel build (H5_HAVE_PARALLEL missing)"
fi
log "system parallel HDF5: $HDF5_PC $HDF5_SYS_VER; MPI: $("$MPICC" --showme:version 2>/dev/null || "$MPICC" --version | head -n 1)"

# ---------------------------------------------------------------- workspace / log
LOG=${H5PY_BUILD_LOG:-${TMPDIR:-/tmp}/build_h5py_mpi-$(date +%Y%m%d-%H%M%S).log}
mkdir -p "$(dirname "$LOG")"; : >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/h5py-build.XXXXXX")
BUILD_PID=""
BUILD_OK=0
cleanup() {
    local rc=$?
    if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
        kill -- "-$BUILD_PID" 2>/dev/null || kill "$BUILD_PID" 2>/dev/null || true
    fi
    if [[ "$BUILD_OK" == 1 ]]; then rm -rf "$WORK"
    elif [[ -d "$WORK" ]]; then printf '%s build directory kept: %s\n' "$TAG" "$WORK" >&2
    fi
    if [[ $rc -ne 0 ]]; then
        printf '%s FAILED after %s (exit %d); full log: %s\n' "$TAG" "$(elapsed)" "$rc" "$LOG" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log "log: $LOG"


# ---------------------------------------------------------------- sdist
TARGET_VER=${H5PY_VERSION:-${CUR_VER:-}}
SPEC=h5py${TARGET_VER:+==$TARGET_VER}
log "downloading $SPEC sdist from PyPI"
# --no-binary h5py (not :all:) so that pip may use wheels for the isolated
# metadata build env (with :all: it would compile numpy from source).
if ! run_logged "pip download" "$PY" -m pip download --disable-pip-version-check --no-deps \
        --no-binary h5py "$SPEC" -d "$WORK/dl"; then
    show_log_tail; die "could not download the $SPEC sdist"
fi
SDIST=$(ls "$WORK"/dl/h5py-*.tar.gz 2>/dev/null | head -n 1)
[[ -n "$SDIST" ]] || die "pip download did not produce an h5py sdist"
log "sdist: $(basename "$SDIST")"

# ---------------------------------------------------------------- build requirements
mapfile -t BUILD_REQS < <("$PY" - "$SDIST" <<'EOF'
import sys, tarfile, tomllib
with tarfile.open(sys.argv[1]) as tf:
    m = next(m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml"))
    data = tomllib.load(tf.extractfile(m))
for req in data["build-system"]["requires"]:
    print(req)
EOF
)
[[ ${#BUILD_REQS[@]} -gt 0 ]] || die "could not read build-system requirements from $SDIST"
log "installing build requirements: ${BUILD_REQS[*]} + mpi4py"
# No --upgrade: requirements already satisfied (e.g. the venv's pinned numpy) are kept.
if ! run_logged "pip build deps" "$PY" -m pip install --disable-pip-version-check "${BUILD_REQS[@]}" mpi4py; then
    show_log_tail; die "pip could not install the h5py build requirements"
fi
MPI4PY_INFO=$("$PY" -c 'import mpi4py; from mpi4py import MPI; print(mpi4py.__version__, "|", MPI.Get_library_version().replace("\0", "").splitlines()[0])' 2>&1) \
    || die "mpi4py does not work: $MPI4PY_INFO"
log "mpi4py: $MPI4PY_INFO"
case "$MPI4PY_INFO" in
    *"Open MPI"*) [[ "$HDF5_PC" == *openmpi* ]] || warn "mpi4py uses Open MPI but HDF5 is '$HDF5_PC'" ;;
    *) [[ "$HDF5_PC" != *openmpi* ]] || warn "mpi4py does not use Open MPI but HDF5 is '$HDF5_PC': MPI mismatch likely" ;;
esac

# ---------------------------------------------------------------- build
log "compiling + installing $(basename "$SDIST" .tar.gz) with CC=$MPICC HDF5_MPI=ON HDF5_PKGCONFIG_NAME=$HDF5_PC (progress every 60 s, full output in $LOG)"
t_build=$SECONDS
if ! CC=$MPICC HDF5_MPI=ON HDF5_PKGCONFIG_NAME=$HDF5_PC run_logged "pip install h5py" \
        "$PY" -m pip install --disable-pip-version-check -v \
        --no-binary=h5py --no-build-isolation --no-cache-dir --force-reinstall --no-deps "$SDIST"; then
    show_log_tail; die "h5py build against parallel HDF5 failed"
fi
log "compiled + installed in $(elapsed "$t_build")"

# ---------------------------------------------------------------- verify
verify_install
BUILD_OK=1
log "SUCCESS: $(h5py_mpi_status | awk '{print "h5py " $1 " (mpi=" $2 ", HDF5 " $3 ")"}') installed into $VENV; total time $(elapsed)"
