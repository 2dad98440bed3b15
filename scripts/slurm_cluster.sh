#!/usr/bin/env bash
# slurm_cluster.sh -- a throw-away one-node SLURM cluster on this machine, for tests and for
# trying the sbatch templates in slurm/ without a real cluster.
#
#   scripts/slurm_cluster.sh start DIR    install (root + apt-get, when missing), write DIR/slurm.conf,
#                                         start munged, slurmctld and slurmd, wait until the node is idle
#   scripts/slurm_cluster.sh stop DIR     cancel this cluster's jobs, stop the three daemons it started
#   scripts/slurm_cluster.sh status DIR   sinfo + squeue of this cluster
#   scripts/slurm_cluster.sh install      only the Debian packages (slurmctld slurmd slurm-client munge)
#
# Then, in your shell:  export SLURM_CONF=DIR/slurm.conf   and use sbatch/squeue/scontrol as usual.
#
# Everything lives in DIR: the munge key and socket, slurm.conf, state, spool, logs and pid files.
# Nothing under /etc is changed and the system's own munge/slurm services (if any) are left
# alone: this cluster talks to its own munged through AuthInfo=socket=DIR/munge/munge.socket.
# Ports are picked free at start. Runs as root (slurmd must start jobs as their user).
#
# The node is declared with CPUS cores (default: 4, or the real count when larger) and
# SlurmdParameters=config_overrides, so a 3-rank job fits on a 2-core machine; there is no
# binding (TaskPlugin=task/none) and no cgroups (ProctrackType=proctrack/linuxproc), which
# also works in containers. No accounting daemon: use `scontrol show job` (finished jobs stay
# visible for MinJobAge=3600 s), not sacct.
#
# Environment: CPUS (declared cores), GPUS (stand-in GPUs, default 4, 0 for none; see
#              write_conf), START_TIMEOUT (seconds to wait for an idle node, 60),
#              PARLE_SKIP_APT=1 (never call apt-get).
set -euo pipefail
say() { echo "[slurm-cluster] $*" >&2; }
die() { say "error: $*"; exit 1; }

PACKAGES=(slurmctld slurmd slurm-client munge)

install_packages() {
  local missing=()
  for exe in slurmctld slurmd sbatch munged mungekey; do
    command -v "$exe" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$exe" >/dev/null 2>&1 \
      || missing+=("$exe")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) != 0 || -n ${PARLE_SKIP_APT:-} ]] || ! command -v apt-get >/dev/null; then
    die "missing ${missing[*]}: install the Debian packages ${PACKAGES[*]} (as root: apt-get install ${PACKAGES[*]})"
  fi
  say "installing ${PACKAGES[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start "$@" in its own session, stdout/stderr to $log, pid to $pidfile.
spawn() {
  local pidfile=$1 log=$2
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {  # stop_pid PIDFILE NAME: TERM, up to 15 s, then KILL
  local pidfile=$1 name=$2 pid i
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name ($pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

write_conf() {
  local dir=$1 host cpus gpus real ctld_port slurmd_port i
  host=$(hostname -s)
  real=$(nproc)
  cpus=${CPUS:-$(( real > 4 ? real : 4 ))}
  gpus=${GPUS:-4}
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [[ $slurmd_port == "$ctld_port" ]]; do slurmd_port=$(free_port); done
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: a one-node test cluster living in $dir
ClusterName=parletest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.daemon.pid
SlurmdPidFile=$dir/run/slurmd.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# containers: no cgroups, no binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# cores as declared below, even where the machine has fewer (a 3-rank job on 2 cores)
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to scontrol for an hour (no accounting daemon: no sacct)
MinJobAge=3600
KillWait=15
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=120
MailProg=/bin/true
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # Stand-in GPUs: links DIR/dev/fakegpuN -> /dev/null play the device files, so jobs that ask for
  # --gpus-per-node are scheduled and see SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES as on a
  # GPU node, but there is no GPU behind them. Enough to run the GPU templates' launch paths
  # with train.device=cpu. GPUS=0: no GPUs at all.
  if ((gpus > 0)); then
    mkdir -p "$dir/dev"
    for ((i = 0; i < gpus; i++)); do ln -sfn /dev/null "$dir/dev/fakegpu$i"; done
    echo "NodeName=$host Name=gpu File=$dir/dev/fakegpu[0-$((gpus - 1))]" >"$dir/gres.conf"
  else
    sed -i -e '/^GresTypes=/d' -e 's/ Gres=gpu:0//' "$dir/slurm.conf"
    : >"$dir/gres.conf"
  fi
}

start() {
  local dir=$1 timeout=${START_TIMEOUT:-60} i state
  [[ $(id -u) == 0 ]] || die "run as root (slurmd starts jobs as their user; munged and slurmd need root here)"
  install_packages
  export PATH=$PATH:/usr/sbin:/sbin
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ ! -k $dir && $dir != / ]] || die "give the cluster a directory of its own, not $dir"
  if alive "$dir/run/slurmctld.pid"; then die "a cluster is already running in $dir (stop it first)"; fi
  mkdir -p "$dir"/{munge,state,spool,log,run}
  chmod 700 "$dir/munge"
  # munged checks the permissions of every directory above its files: no group/other write
  chmod go-w "$dir"
  [[ -f $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key"
  chmod 600 "$dir/munge/munge.key"
  write_conf "$dir"
  export SLURM_CONF=$dir/slurm.conf

  spawn "$dir/run/munged.pid" "$dir/log/munged.out" munged --foreground --force \
    --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  for ((i = 0; i < 100; i++)); do [[ -S $dir/munge/munge.socket ]] && break; sleep 0.1; done
  [[ -S $dir/munge/munge.socket ]] || { tail -n 20 "$dir/log/munged".* >&2 || true; die "munged did not start"; }
  munge --socket="$dir/munge/munge.socket" -n | unmunge --socket="$dir/munge/munge.socket" >/dev/null \
    || die "munge round trip failed (see $dir/log/munged.*)"

  spawn "$dir/run/slurmctld.pid" "$dir/log/slurmctld.out" slurmctld -D -c -i -f "$SLURM_CONF"
  spawn "$dir/run/slurmd.pid" "$dir/log/slurmd.out" slurmd -D -f "$SLURM_CONF" -N "$(hostname -s)"
  for ((i = 0; i < timeout * 2; i++)); do
    alive "$dir/run/slurmctld.pid" || { tail -n 30 "$dir/log/slurmctld".* >&2 || true; die "slurmctld exited"; }
    alive "$dir/run/slurmd.pid" || { tail -n 30 "$dir/log/slurmd".* >&2 || true; die "slurmd exited"; }
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
    [[ $state == idle ]] && break
    [[ $state == inval* || $state == drain* || $state == down* ]] && ((i > 10)) && break
    sleep 0.5
  done
  if [[ $state != idle ]]; then
    sinfo -N -l >&2 || true
    tail -n 30 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop "$dir"
    die "the node did not become idle within ${timeout}s (state: ${state:-none})"
  fi
  say "up: node $(hostname -s) idle; export SLURM_CONF=$SLURM_CONF"
  echo "SLURM_CONF=$SLURM_CONF"
}

stop() {
  local dir=$1 i jobs
  dir=$(cd "$dir" && pwd)
  export PATH=$PATH:/usr/sbin:/sbin SLURM_CONF=$dir/slurm.conf
  if alive "$dir/run/slurmctld.pid"; then
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      say "cancelling jobs: $(echo $jobs)"
      scancel $jobs 2>/dev/null || true
      for ((i = 0; i < 60; i++)); do
        [[ -z $(squeue -h -o %A 2>/dev/null || true) ]] && break
        sleep 0.5
      done
    fi
  fi
  stop_pid "$dir/run/slurmd.pid" slurmd
  stop_pid "$dir/run/slurmctld.pid" slurmctld
  stop_pid "$dir/run/munged.pid" munged
  say "stopped the cluster in $dir"
}

status() {
  local dir
  dir=$(cd "$1" && pwd)
  export PATH=$PATH:/usr/sbin:/sbin SLURM_CONF=$dir/slurm.conf
  sinfo -N -l
  squeue
}

case ${1:-} in
  start) [[ $# == 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [[ $# == 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  status) [[ $# == 2 ]] || die "usage: $0 status DIR"; status "$2" ;;
  install) install_packages ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
