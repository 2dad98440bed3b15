#!/usr/bin/env bash
# build_horovod.sh -- build Horovod 0.28.1 from the PyPI sdist into a Python venv.
#
# Horovod 0.28.1 pins C++14 in its CMakeLists, which no longer compiles against
# torch >= 2.1 (torch 2.1-2.13 need C++17, torch >= 2.14 needs C++20).  This
# script downloads the sdist, patches the C++ standard in the top-level
# CMakeLists.txt and horovod/torch/CMakeLists.txt (verified, fails loudly if the
# patch does not apply), builds it with PyTorch + MPI + Gloo (and NCCL GPU ops
# when a CUDA toolkit and a CUDA build of torch are present), installs it into
# the venv and verifies it (import, `horovodrun --check-build`, a real 2-rank
# allreduce under `mpirun` and under `horovodrun --gloo`).
#
# Usage:
#   scripts/build_horovod.sh [--python PATH] [--cpu-only] [--force] [--verify-only]
#                            [--keep-build-dir] [-h|--help]
#
#   --python PATH     Python interpreter of the target venv.  Default: $PYTHON,
#                     else $VIRTUAL_ENV/bin/python, else <repo>/.venv/bin/python,
#                     else `python3` on PATH.
#   --cpu-only        Do not build GPU (CUDA/NCCL) support (same as HOROVOD_CPU_ONLY=1).
#   --force           Rebuild even if the idempotency stamp says we are up to date.
#   --verify-only     Skip the build; just run the verification steps.
#   --keep-build-dir  Do not delete the temporary build directory on success.
#
# Environment variables honoured:
#   PYTHON                      interpreter (same as --python)
#   HOROVOD_CPU_ONLY=1          CPU-only build (no CUDA, no NCCL)
#   HOROVOD_ALLOW_CPU_FALLBACK=1  if the NCCL/CUDA build fails, retry CPU-only
#                               (default: fail)
#   HOROVOD_FORCE_REBUILD=1     same as --force
#   CUDA_HOME / CUDA_PATH       CUDA toolkit (default /usr/local/cuda); used only
#                               if it has bin/nvcc and torch is a CUDA build
#   NCCL_HOME                   NCCL install (include/nccl.h, lib/libnccl.so*);
#                               default: derived from the nvidia-nccl-* wheel in
#                               the venv via a private "$VENV/nccl-home"
#   HOROVOD_NCCL_LINK           SHARED/STATIC (default SHARED for the wheel NCCL)
#   HOROVOD_BUILD_CUDA_CC_LIST  e.g. "80,90"; default: torch's arch list
#                               (torch.cuda.get_arch_list()) filtered by nvcc
#   HOROVOD_CXX_STANDARD        override the C++ standard (14/17/20)
#   HOROVOD_BUILD_JOBS          parallel compile jobs (default: min(nproc, 8,
#                               RAM/2GiB)); exported as MAKEFLAGS=-jN
#   HOROVOD_CMAKE               cmake binary (default /usr/bin/cmake if it is
#                               3.13 <= v < 4, else `cmake` on PATH; with a cmake
#                               4.x CMAKE_POLICY_VERSION_MINIMUM=3.5 is exported)
#   HOROVOD_SDIST               path to an already downloaded horovod-0.28.1.tar.gz
#   HOROVOD_BUILD_LOG           log file (default /tmp/build_horovod-<date>.log)
#   TMPDIR                      where the temporary build dir is created
#
# Duration: a fresh build takes ~10-25 min on 2 cores (CPU-only is faster; the
# CUDA kernels are compiled for every arch in HOROVOD_BUILD_CUDA_CC_LIST), the
# verification ~30-60 s. When Horovod 0.28.1 is already installed and was built
# against the same torch version (stamp "$VENV/.horovod-build-stamp") the script
# exits in a few seconds.
#
# Requirements: g++, make, OpenMPI (mpicc/mpirun, Debian: openmpi-bin
# libopenmpi-dev), cmake >= 3.13, torch installed in the venv, network access
# to PyPI (unless HOROVOD_SDIST is given).
#
# Running as root: plain `mpirun` refuses to run as root; the script passes
# --allow-run-as-root itself (or set OMPI_ALLOW_RUN_AS_ROOT=1 and
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).  `horovodrun` (MPI mode) adds
# --allow-run-as-root on its own; `horovodrun --gloo` needs nothing special.
# The venv's bin/ must be on PATH for horovodrun/mpirun-launched workers.

set -euo pipefail

HVD_VERSION=0.28.1
TAG="[build_horovod]"
T_START=$SECONDS

# log, warn, die, elapsed, run_logged, show_log_tail
source "$(dirname "${BASH_SOURCE[0]}")/build_common.sh"

# ---------------------------------------------------------------- arguments
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

PY_ARG=""
CPU_ONLY=${HOROVOD_CPU_ONLY:-0}
FORCE=${HOROVOD_FORCE_REBUILD:-0}
VERIFY_ONLY=0
KEEP_BUILD_DIR=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) [[ $# -ge 2 ]] || die "--python needs an argument"; PY_ARG=$2; shift 2 ;;
        --python=*) PY_ARG=${1#--python=}; shift ;;
        --cpu-only) CPU_ONLY=1; shift ;;
        --force) FORCE=1; shift ;;
        --verify-only) VERIFY_ONLY=1; shift ;;
        --keep-build-dir) KEEP_BUILD_DIR=1; shift ;;
        -h|--help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$CPU_ONLY" == 1 ]] || CPU_ONLY=0

# ---------------------------------------------------------------- interpreter / venv
if [[ -n "$PY_ARG" ]]; then PY=$PY_ARG
elif [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PY=$VIRTUAL_ENV/bin/python
elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PY=$REPO_ROOT/.venv/bin/python
else PY=python3
fi
command -v "$PY" >/dev/null 2>&1 || die "python interpreter not found: $PY"
# Absolute path, but do NOT resolve symlinks (a venv's python is a symlink).
PY=$(command -v "$PY")
[[ "$PY" == /* ]] || PY="$(pwd)/$PY"
VENV=$("$PY" -c 'import sys; print(sys.prefix)')
if [[ "$("$PY" -c 'import sys; print(sys.prefix != sys.base_prefix)')" != True ]]; then
    warn "$PY is not inside a virtualenv (sys.prefix=$VENV); installing there anyway"
fi
export PATH="$VENV/bin:$PATH"
STAMP="$VENV/.horovod-build-stamp"
log "python: $PY  (venv: $VENV)"

TORCH_INFO=$("$PY" -c 'import re, torch; m = re.match(r"(\d+)\.(\d+)", torch.__version__); print(torch.__version__, torch.version.cuda or "-", m.group(1), m.group(2))' 2>/dev/null | tail -n 1) \
    || die "torch is not importable with $PY -- install torch into the venv first"
read -r TORCH_VERSION TORCH_CUDA T_MAJ T_MIN <<<"$TORCH_INFO"
[[ "$TORCH_CUDA" != - ]] || TORCH_CUDA=""
log "torch: $TORCH_VERSION (CUDA build: ${TORCH_CUDA:-no})"

# C++ standard from the torch version
if [[ -n "${HOROVOD_CXX_STANDARD:-}" ]]; then
    CXX_STD=$HOROVOD_CXX_STANDARD
else
    if (( T_MAJ > 2 || (T_MAJ == 2 && T_MIN >= 14) )); then CXX_STD=20
    elif (( T_MAJ == 2 && T_MIN >= 1 )); then CXX_STD=17
    else CXX_STD=14
    fi
fi
[[ "$CXX_STD" =~ ^(14|17|20|23)$ ]] || die "unsupported C++ standard: $CXX_STD"

# ---------------------------------------------------------------- GPU / NCCL decision
CUDA_DIR=${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}
WANT_GPU=0
if [[ "$CPU_ONLY" == 1 ]]; then
    log "GPU ops: disabled (HOROVOD_CPU_ONLY=1 / --cpu-only)"
elif [[ -x "$CUDA_DIR/bin/nvcc" && -n "$TORCH_CUDA" ]]; then
    WANT_GPU=1
    log "GPU ops: NCCL requested (CUDA toolkit $CUDA_DIR, torch CUDA $TORCH_CUDA)"
else
    if [[ -z "$TORCH_CUDA" ]]; then
        log "GPU ops: none (torch is a CPU-only build)"
    else
        log "GPU ops: none (no CUDA toolkit: $CUDA_DIR/bin/nvcc not found; set CUDA_HOME)"
    fi
    CPU_ONLY=1
fi
REQUESTED_OPS=$([[ $WANT_GPU == 1 ]] && echo NCCL || echo none)

# ---------------------------------------------------------------- verification
check_build_ok() {  # $1 = NCCL|none ; prints the listing, returns non-zero on mismatch
    local want_ops=$1 out rc=0 item
    out=$(timeout 120 horovodrun --check-build 2>&1) || { printf '%s\n' "$out"; return 1; }
    printf '%s\n' "$out" | sed "s/^/$TAG   /"
    for item in PyTorch MPI Gloo; do
        if ! grep -Eq "^[[:space:]]*\[X\][[:space:]]+$item[[:space:]]*$" <<<"$out"; then
            printf '%s ERROR: horovodrun --check-build does not list %s as built\n' "$TAG" "$item" >&2; rc=1
        fi
    done
    if [[ "$want_ops" == NCCL ]] && ! grep -Eq '^[[:space:]]*\[X\][[:space:]]+NCCL[[:space:]]*$' <<<"$out"; then
        printf '%s ERROR: NCCL GPU ops were requested but horovodrun --check-build does not list NCCL as built\n' "$TAG" >&2; rc=1
    fi
    return $rc
}

write_test_script() {  # $1 = path
    cat >"$1" <<'EOF'
import os, sys
import torch
import horovod.torch as hvd

hvd.init()
r, s = hvd.rank(), hvd.size()
expect = os.environ.get("HVD_TEST_CONTROLLER", "")
assert s == 2, f"expected 2 ranks, got {s}"
if expect == "mpi":
    assert hvd.mpi_enabled(), "MPI controller not in use"
if expect == "gloo":
    assert hvd.gloo_enabled(), "Gloo controller not in use"
avg1 = hvd.allreduce(torch.ones(3), op=hvd.Average, name="ones_avg")
avg = hvd.allreduce(torch.ones(3) * (r + 1), op=hvd.Average, name="ranked_avg")
tot = hvd.allreduce(torch.ones(3), op=hvd.Sum, name="ones_sum")
assert torch.allclose(avg1, torch.ones(3)), avg1
assert torch.allclose(avg, torch.full((3,), 1.5)), avg
assert torch.allclose(tot, torch.full((3,), 2.0)), tot
b = hvd.broadcast(torch.full((2,), float(r + 10)), root_rank=1, name="bcast")
assert torch.allclose(b, torch.full((2,), 11.0)), b
ctrl = 'mpi' if hvd.mpi_enabled() else 'gloo'
line = (f"rank {r}/{s}: allreduce avg(ones)={avg1.tolist()} avg(rank+1)={avg.tolist()} "
        f"sum={tot.tolist()} bcast={b.tolist()} controller={ctrl} OK\n")
# Ranks share one stdout pipe and their writes can interleave (seen in CI:
# "...OKrank 1/2: ..."), so success is recorded in a per-rank marker file
# and the printed line is informational only.
with open(f"ok.{ctrl}.{r}", "w") as fh:
    fh.write(line)
os.write(1, line.encode())
hvd.shutdown()
EOF
}

verify_install() {  # $1 = NCCL|none
    local want_ops=$1 out tdir test_py
    log "verify: import horovod.torch + hvd.init()"
    out=$("$PY" - "$HVD_VERSION" "$want_ops" <<'EOF' 2>&1
import sys
import horovod, horovod.torch as hvd
want_version, want_ops = sys.argv[1], sys.argv[2]
hvd.init()
print(f"horovod {horovod.__version__} size={hvd.size()} rank={hvd.rank()} "
      f"mpi_built={hvd.mpi_built()} gloo_built={hvd.gloo_built()} "
      f"nccl_built={hvd.nccl_built()} cuda_built={hvd.cuda_built()}")
assert horovod.__version__ == want_version, f"horovod version {horovod.__version__} != {want_version}"
assert hvd.size() == 1
assert hvd.mpi_built() and hvd.gloo_built(), "MPI or Gloo support missing"
if want_ops == "NCCL":
    assert hvd.nccl_built(), "NCCL support missing"
hvd.shutdown()
EOF
    ) || { printf '%s\n' "$out" >&2; die "'import horovod.torch; hvd.init()' failed (see above)"; }
    printf '%s\n' "$out" | sed "s/^/$TAG   /"
    log "verify: python -c 'import horovod.torch as hvd; hvd.init(); print(hvd.size())' -> $("$PY" -c 'import horovod.torch as hvd; hvd.init(); print(hvd.size())' 2>&1 | tail -n 1)"

    log "verify: horovodrun --check-build"
    check_build_ok "$want_ops" || die "horovodrun --check-build verification failed"

    tdir=$(mktemp -d "${TMPDIR:-/tmp}/hvd-verify.XXXXXX")
    test_py="$tdir/hvd_allreduce_test.py"
    write_test_script "$test_py"

    local mpi_args=(--oversubscribe -np 2 -x PATH -x HVD_TEST_CONTROLLER)
    [[ $EUID -eq 0 ]] && mpi_args=(--allow-run-as-root "${mpi_args[@]}")
    [[ -n "${LD_LIBRARY_PATH:-}" ]] && mpi_args+=(-x LD_LIBRARY_PATH)
    log "verify: timeout 120 mpirun ${mpi_args[*]} $PY hvd_allreduce_test.py"
    verify_two_ranks "$tdir" ok.mpi. "allreduce under mpirun" \
        env HVD_TEST_CONTROLLER=mpi timeout 120 mpirun "${mpi_args[@]}" "$PY" "$test_py"

    log "verify: timeout 120 horovodrun --gloo -np 2 -H localhost:2 $PY hvd_allreduce_test.py"
    verify_two_ranks "$tdir" ok.gloo. "allreduce under horovodrun --gloo" \
        env HVD_TEST_CONTROLLER=gloo timeout 120 horovodrun --gloo -np 2 -H localhost:2 \
        "$PY" "$test_py"
    rm -rf "$tdir"
    log "verify: all checks passed"
}

stamp_get() { [[ -f "$STAMP" ]] && sed -n "s/^$1=//p" "$STAMP" | head -n 1 || true; }

if [[ "$VERIFY_ONLY" == 1 ]]; then
    built_ops=$(stamp_get gpu_ops_built); built_ops=${built_ops:-$REQUESTED_OPS}
    verify_install "$built_ops"
    log "done in $(elapsed)"
    exit 0
fi

# ---------------------------------------------------------------- idempotent fast path
if [[ "$FORCE" != 1 && -f "$STAMP" ]]; then
    installed=$("$PY" -c 'import horovod.torch, horovod; print(horovod.__version__)' 2>/dev/null | tail -n 1 || true)
    fallback_ok=1   # a previous CPU fallback only counts as up to date if fallback is allowed
    [[ "$(stamp_get gpu_ops_built)" == "$REQUESTED_OPS" || "${HOROVOD_ALLOW_CPU_FALLBACK:-0}" == 1 ]] || fallback_ok=0
    if [[ "$installed" == "$HVD_VERSION" \
          && "$(stamp_get torch)" == "$TORCH_VERSION" \
          && "$(stamp_get gpu_ops_requested)" == "$REQUESTED_OPS" && "$fallback_ok" == 1 ]]; then
        log "horovod $installed already built against torch $TORCH_VERSION (GPU ops: $(stamp_get gpu_ops_built)); nothing to do (stamp: $STAMP; use --force to rebuild)"
        log "done in $(elapsed)"
        exit 0
    fi
    log "stamp $STAMP is stale or horovod not importable (installed='${installed:-none}', stamp torch='$(stamp_get torch)', requested ops='$(stamp_get gpu_ops_requested)', built ops='$(stamp_get gpu_ops_built)'); rebuilding"
fi

# ---------------------------------------------------------------- tools
for tool in g++ make mpicc mpicxx mpirun; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (Debian: apt-get install build-essential openmpi-bin libopenmpi-dev)"
done

cmake_version() { "$1" --version 2>/dev/null | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p' | head -n 1; }
if [[ -n "${HOROVOD_CMAKE:-}" ]]; then
    CMAKE_BIN=$HOROVOD_CMAKE
elif [[ -x /usr/bin/cmake ]]; then
    CMAKE_BIN=/usr/bin/cmake
else
    CMAKE_BIN=$(command -v cmake || true)
fi
[[ -n "$CMAKE_BIN" && -x "$CMAKE_BIN" ]] || die "cmake not found (Debian: apt-get install cmake)"
CMAKE_VER=$(cmake_version "$CMAKE_BIN")
[[ -n "$CMAKE_VER" ]] || die "could not determine the version of $CMAKE_BIN"
if ! printf '3.13\n%s\n' "$CMAKE_VER" | sort -V -C; then die "cmake $CMAKE_VER at $CMAKE_BIN is too old (need >= 3.13)"; fi
if [[ "${CMAKE_VER%%.*}" -ge 4 ]]; then
    export CMAKE_POLICY_VERSION_MINIMUM=3.5
    warn "using cmake $CMAKE_VER: exporting CMAKE_POLICY_VERSION_MINIMUM=3.5 (prefer a cmake 3.x, e.g. Debian's /usr/bin/cmake)"
fi
export HOROVOD_CMAKE=$CMAKE_BIN
log "cmake: $CMAKE_BIN ($CMAKE_VER); C++ standard: C++$CXX_STD; compilers: $(g++ -dumpfullversion), $(mpicc --showme:version 2>/dev/null || echo mpicc)"

if [[ -n "${HOROVOD_BUILD_JOBS:-}" ]]; then
    JOBS=$HOROVOD_BUILD_JOBS
else
    JOBS=$(nproc 2>/dev/null || echo 2)
    mem_gib=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 4)
    (( JOBS > 8 )) && JOBS=8
    (( mem_gib / 2 < JOBS )) && JOBS=$(( mem_gib / 2 ))
    (( JOBS < 1 )) && JOBS=1
fi
export MAKEFLAGS="-j$JOBS"
log "parallel jobs: $JOBS (MAKEFLAGS=$MAKEFLAGS)"

# ---------------------------------------------------------------- workspace / log
LOG=${HOROVOD_BUILD_LOG:-${TMPDIR:-/tmp}/build_horovod-$(date +%Y%m%d-%H%M%S).log}
mkdir -p "$(dirname "$LOG")"; : >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/horovod-build.XXXXXX")
BUILD_PID=""
BUILD_OK=0
cleanup() {
    local rc=$?
    if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
        kill -- "-$BUILD_PID" 2>/dev/null || kill "$BUILD_PID" 2>/dev/null || true
    fi
    if [[ "$BUILD_OK" == 1 && "$KEEP_BUILD_DIR" != 1 ]]; then
        rm -rf "$WORK"
    elif [[ -d "$WORK" ]]; then
        printf '%s build directory kept: %s\n' "$TAG" "$WORK" >&2
    fi
    if [[ $rc -ne 0 ]]; then
        printf '%s FAILED after %s (exit %d); full log: %s\n' "$TAG" "$(elapsed)" "$rc" "$LOG" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log "log: $LOG"
log "build dir: $WORK"

# Run a command with output to $LOG, printing a heartbeat every 60 s.

# ---------------------------------------------------------------- python build deps
log "ensuring build/runtime python deps (setuptools, wheel, cffi, cloudpickle, psutil, pyyaml, packaging)"
if ! run_logged "pip deps" "$PY" -m pip install --disable-pip-version-check \
        'setuptools>=61' wheel 'cffi>=1.4.0' cloudpickle psutil pyyaml packaging; then
    show_log_tail; die "pip could not install the python build dependencies"
fi

# ---------------------------------------------------------------- sdist
if [[ -n "${HOROVOD_SDIST:-}" ]]; then
    [[ -f "$HOROVOD_SDIST" ]] || die "HOROVOD_SDIST=$HOROVOD_SDIST does not exist"
    SDIST=$HOROVOD_SDIST
else
    log "downloading horovod==$HVD_VERSION sdist from PyPI"
    mkdir -p "$WORK/dl"
    if ! run_logged "pip download" "$PY" -m pip download --disable-pip-version-check --no-deps \
            --no-binary horovod "horovod==$HVD_VERSION" -d "$WORK/dl"; then
        show_log_tail; die "could not download the horovod $HVD_VERSION sdist"
    fi
    SDIST=$(ls "$WORK"/dl/horovod-"$HVD_VERSION".tar.gz 2>/dev/null | head -n 1)
    [[ -n "$SDIST" ]] || die "pip download did not produce horovod-$HVD_VERSION.tar.gz"
fi

# Replace exactly one `set(CMAKE_CXX_STANDARD <old>)` line in a file and verify.
patch_cxx_std() {  # $1 = file, $2 = new standard
    local f=$1 std=$2 pat='^[[:space:]]*set\(CMAKE_CXX_STANDARD[[:space:]]+14\)[[:space:]]*$' n
    [[ -f "$f" ]] || die "patch: $f not found"
    n=$(grep -Ec "$pat" "$f" || true)
    [[ "$n" == 1 ]] || die "patch: expected exactly 1 'set(CMAKE_CXX_STANDARD 14)' line in $f, found $n -- sdist layout changed?"
    sed -E -i "s/^([[:space:]]*)set\(CMAKE_CXX_STANDARD[[:space:]]+14\)[[:space:]]*$/\1set(CMAKE_CXX_STANDARD $std)/" "$f"
    n=$(grep -Ec "$pat" "$f" || true)
    [[ "$n" == 0 ]] || die "patch: C++14 line still present in $f after sed"
    n=$(grep -Ec "^[[:space:]]*set\(CMAKE_CXX_STANDARD $std\)[[:space:]]*\$" "$f" || true)
    [[ "$n" -ge 1 ]] || die "patch: 'set(CMAKE_CXX_STANDARD $std)' not found in $f after sed"
    log "  patched $(basename "$(dirname "$f")")/$(basename "$f"): CMAKE_CXX_STANDARD 14 -> $std"
}

# With a CUDA build of torch, horovod/torch/CMakeLists.txt enables CUDA on its own
# (`elseif (Pytorch_CUDA AND NOT HAVE_CUDA) add_cuda()`) whenever torch finds a
# CUDA_HOME -- a CPU-only build must switch that off.
patch_no_torch_cuda() {  # $1 = file
    local f=$1 old='elseif (Pytorch_CUDA AND NOT HAVE_CUDA)' n
    n=$(grep -Fxc "$old" "$f" || true)
    [[ "$n" == 1 ]] || die "patch: expected exactly 1 '$old' line in $f, found $n"
    sed -i "s/^elseif (Pytorch_CUDA AND NOT HAVE_CUDA)\$/elseif (Pytorch_CUDA AND NOT HAVE_CUDA AND NOT \"\$ENV{HOROVOD_CPU_ONLY}\" STREQUAL \"1\")/" "$f"
    grep -Fq 'AND NOT "$ENV{HOROVOD_CPU_ONLY}" STREQUAL "1")' "$f" || die "patch: CPU-only patch did not apply to $f"
    log "  patched torch/CMakeLists.txt: no implicit CUDA when HOROVOD_CPU_ONLY=1"
}

prepare_source() {  # $1 = dest dir, $2 = 1 for cpu-only
    local dest=$1 cpu=$2 src
    rm -rf "$dest"; mkdir -p "$dest"
    tar -xzf "$SDIST" -C "$dest"
    src="$dest/horovod-$HVD_VERSION"
    [[ -f "$src/setup.py" ]] || die "unexpected sdist layout in $SDIST"
    log "patching C++ standard (C++$CXX_STD) in $src"
    if [[ "$CXX_STD" != 14 ]]; then
        patch_cxx_std "$src/CMakeLists.txt" "$CXX_STD"
        patch_cxx_std "$src/horovod/torch/CMakeLists.txt" "$CXX_STD"
    else
        log "  torch < 2.1: keeping C++14"
    fi
    [[ "$cpu" == 1 ]] && patch_no_torch_cuda "$src/horovod/torch/CMakeLists.txt"
    SRC=$src
}

# ---------------------------------------------------------------- NCCL home
setup_nccl_home() {
    local inc lib wheel_dir
    if [[ -n "${NCCL_HOME:-}" ]]; then
        [[ -f "$NCCL_HOME/include/nccl.h" ]] || die "NCCL_HOME=$NCCL_HOME has no include/nccl.h"
        compgen -G "$NCCL_HOME/lib*/libnccl*" >/dev/null || die "NCCL_HOME=$NCCL_HOME has no lib/libnccl*"
        NCCL_DIR=$NCCL_HOME
        log "NCCL: using NCCL_HOME=$NCCL_DIR"
        return
    fi
    wheel_dir=$("$PY" - <<'EOF'
import importlib.util, os
try:
    spec = importlib.util.find_spec("nvidia.nccl")
except Exception:
    spec = None
locs = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
for d in locs:
    if os.path.isfile(os.path.join(d, "include", "nccl.h")) and os.path.exists(os.path.join(d, "lib", "libnccl.so.2")):
        print(d); break
EOF
    )
    [[ -n "$wheel_dir" ]] || die "NCCL GPU ops requested but no NCCL found: set NCCL_HOME, install an nvidia-nccl-cuXX wheel in the venv, or use HOROVOD_CPU_ONLY=1"
    inc="$wheel_dir/include"; lib="$wheel_dir/lib/libnccl.so.2"
    # The wheel ships only libnccl.so.2 (no libnccl.so / static lib): make a private NCCL home.
    NCCL_DIR="$VENV/nccl-home"
    rm -rf "$NCCL_DIR"; mkdir -p "$NCCL_DIR/lib"
    ln -s "$inc" "$NCCL_DIR/include"
    ln -s "$lib" "$NCCL_DIR/lib/libnccl.so.2"
    ln -s libnccl.so.2 "$NCCL_DIR/lib/libnccl.so"
    export HOROVOD_NCCL_LINK=${HOROVOD_NCCL_LINK:-SHARED}
    log "NCCL: from wheel $wheel_dir -> private NCCL home $NCCL_DIR (HOROVOD_NCCL_LINK=$HOROVOD_NCCL_LINK)"
}

default_cc_list() {  # torch's arch list, restricted to what nvcc can build
    local nvcc_codes torch_ccs cc out=()
    nvcc_codes=$("$CUDA_DIR/bin/nvcc" --list-gpu-code 2>/dev/null | sed -n 's/^sm_\([0-9]\+\)$/\1/p' | tr '\n' ' ')
    torch_ccs=$("$PY" -c 'import torch; print(" ".join(a[3:] for a in torch.cuda.get_arch_list() if a.startswith("sm_") and a[3:].isdigit()))' 2>/dev/null || true)
    for cc in $torch_ccs; do
        [[ " $nvcc_codes " == *" $cc "* ]] && out+=("$cc")
    done
    (IFS=,; echo "${out[*]}")
}

# ---------------------------------------------------------------- build
do_build() {  # $1 = 1 for GPU (NCCL) build, 0 for CPU-only
    local gpu=$1 t0=$SECONDS
    export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1
    export HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
    unset HOROVOD_GPU HOROVOD_GPU_OPERATIONS HOROVOD_GPU_ALLREDUCE HOROVOD_GPU_ALLGATHER \
          HOROVOD_GPU_BROADCAST HOROVOD_GPU_ALLTOALL HOROVOD_GPU_REDUCESCATTER \
          HOROVOD_CUDA_HOME HOROVOD_NCCL_HOME
    if [[ "$gpu" == 1 ]]; then
        setup_nccl_home
        export HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME=$CUDA_DIR HOROVOD_NCCL_HOME=$NCCL_DIR
        export CUDA_HOME=$CUDA_DIR HOROVOD_CPU_ONLY=0
        if [[ -z "${HOROVOD_BUILD_CUDA_CC_LIST:-}" ]]; then
            local ccl; ccl=$(default_cc_list)
            [[ -n "$ccl" ]] && export HOROVOD_BUILD_CUDA_CC_LIST=$ccl
        fi
        local nvcc_ver; nvcc_ver=$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')
        [[ "${nvcc_ver%%.*}" == "${TORCH_CUDA%%.*}" ]] \
            || warn "CUDA toolkit $nvcc_ver vs torch CUDA $TORCH_CUDA: major versions differ"
        log "building with NCCL: HOROVOD_CUDA_HOME=$CUDA_DIR (nvcc $nvcc_ver) HOROVOD_NCCL_HOME=$NCCL_DIR HOROVOD_BUILD_CUDA_CC_LIST=${HOROVOD_BUILD_CUDA_CC_LIST:-<all nvcc archs>}"
        prepare_source "$WORK/src-gpu" 0
    else
        export HOROVOD_CPU_ONLY=1
        prepare_source "$WORK/src-cpu" 1
    fi
    log "compiling + installing horovod $HVD_VERSION ($([[ $gpu == 1 ]] && echo 'PyTorch+MPI+Gloo+NCCL' || echo 'PyTorch+MPI+Gloo, CPU only')); progress every 60 s, full output in $LOG"
    local rc=0
    pushd "$SRC" >/dev/null
    run_logged "pip install horovod" "$PY" -m pip install --disable-pip-version-check \
        -v --no-build-isolation --no-cache-dir . || rc=$?
    popd >/dev/null
    if [[ $rc -eq 0 ]]; then
        log "compiled + installed in $(elapsed "$t0")"
    fi
    return $rc
}

BUILT_OPS=$REQUESTED_OPS
if [[ "$WANT_GPU" == 1 ]]; then
    if ! do_build 1; then
        show_log_tail
        if [[ "${HOROVOD_ALLOW_CPU_FALLBACK:-0}" == 1 ]]; then
            warn "the NCCL/CUDA build FAILED (log: $LOG); HOROVOD_ALLOW_CPU_FALLBACK=1 -> retrying a CPU-only build (no GPU ops!)"
            do_build 0 || { show_log_tail; die "CPU-only fallback build failed as well"; }
            BUILT_OPS=none
        else
            die "the NCCL/CUDA build failed. Fix the cause (see log above), or set HOROVOD_ALLOW_CPU_FALLBACK=1 to fall back to a CPU-only build, or HOROVOD_CPU_ONLY=1"
        fi
    fi
else
    do_build 0 || { show_log_tail; die "horovod build failed"; }
fi

# ---------------------------------------------------------------- verify + stamp
rm -f "$STAMP"
verify_install "$BUILT_OPS"
cat >"$STAMP" <<EOF
horovod=$HVD_VERSION
torch=$TORCH_VERSION
cxx_standard=$CXX_STD
gpu_ops_requested=$REQUESTED_OPS
gpu_ops_built=$BUILT_OPS
cuda_home=$([[ $BUILT_OPS == NCCL ]] && echo "$CUDA_DIR" || true)
nccl_home=$([[ $BUILT_OPS == NCCL ]] && echo "${NCCL_DIR:-}" || true)
python=$PY
built_at=$(date -Is)
build_seconds=$((SECONDS - T_START))
EOF
BUILD_OK=1
log "wrote stamp $STAMP"
log "SUCCESS: horovod $HVD_VERSION (GPU ops: $BUILT_OPS) installed into $VENV; total time $(elapsed)"
