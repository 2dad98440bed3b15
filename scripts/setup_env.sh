#!/usr/bin/env bash
# setup_env.sh -- make .venv ready to run and test parle_hpc on a Debian/Ubuntu machine.
#
# Idempotent and fast the second time (a few seconds): it installs only what is missing.
#   1. System packages (only when run as root with apt-get): Open MPI, parallel HDF5,
#      pkg-config. Without root it checks for mpirun and says what to install.
#   2. .venv (python3 -m venv) with torch/torchvision pinned by constraints.txt and
#      `pip install -e .[test]` (parle_hpc, mpi4py, h5py, pytest, ...).
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv),
#              PARLE_SKIP_APT=1 (never call apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
say() { echo "[setup] $*"; }

# ---------------------------------------------------------------- 1. system packages
# slurmctld slurmd slurm-client munge: the one-node SLURM cluster tests/slurm starts
APT_PACKAGES=(openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config
              slurmctld slurmd slurm-client munge)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 && -z ${PARLE_SKIP_APT:-} ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing system packages: ${missing[*]} (not root: install them, or load your site's MPI module)"
  fi
fi
command -v mpirun >/dev/null || say "warning: no mpirun on PATH; multi-rank tests need Open MPI"

# ---------------------------------------------------------------- 2. the virtualenv
if [[ ! -x $VENV/bin/python ]]; then
  say "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.parle-setup-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$VENV/bin/python" -c "import parle_hpc, torch, torchvision, mpi4py, h5py" 2>/dev/null; then
  say "$VENV is up to date"
  exit 0
fi
say "installing Python packages into $VENV (torch $(grep '^torch==' constraints.txt | cut -d= -f3))"
log=$VENV/setup.log
pip_install() {
  if ! "$VENV/bin/python" -m pip install "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "pip install $* failed; full log in $log"
    exit 1
  fi
}
: >"$log"
pip_install --upgrade pip 'setuptools>=77' wheel
pip_install -c constraints.txt torch torchvision
pip_install -c constraints.txt -e '.[test]'
"$VENV/bin/python" -c "import parle_hpc, torch, torchvision, mpi4py, h5py; print('[setup] ok: torch', torch.__version__, '| torchvision', torchvision.__version__, '| mpi4py', mpi4py.__version__, '| h5py', h5py.__version__)"
echo "$want" > "$stamp"
