"""``parle-train --nproc N``: start N local ranks (torch.distributed over gloo/NCCL).

For machines without an MPI launcher. The children get torchrun's variables (RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). If one child fails
the others are stopped, so the job never hangs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


from . import EXIT_REQUEUE as REQUEUE


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, args: list[str], grace_s: float = 10.0) -> int:
    """Run ``python -m parle_hpc.train ARGS`` as ``nproc`` ranks; return the job's exit code."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    port = free_port()
    procs: list[subprocess.Popen] = []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "parle_hpc.train", *args], env=env))

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)
        deadline = time.monotonic() + grace_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def forward(signum, frame) -> None:  # noqa: ARG001 - a scheduler's signal reaches every rank
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, forward)
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed and failed[0][1] == REQUEUE:
                # every rank checkpointed together and is exiting: give them time to finish
                for p in procs:
                    try:
                        p.wait(timeout=grace_s * 6)
                    except subprocess.TimeoutExpired:
                        p.kill()
                return REQUEUE
            if failed:
                # The first rank to fail is often a survivor reporting a lost peer: wait a
                # moment and blame a rank that was killed by a signal, if there is one.
                time.sleep(1.0)
                codes = [p.poll() for p in procs]
                failed = sorted(((r, c) for r, c in enumerate(codes) if c not in (None, 0, REQUEUE)),
                                key=lambda rc: (rc[1] >= 0, rc[0]))
                rank, code = failed[0]
                how = (f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0
                       else f"exited with code {code}")
                print(f"parle-train: rank {rank} {how} (exit code {code}); stopping the other ranks",
                      file=sys.stderr, flush=True)
                stop_all()
                return code if code > 0 else 128 - code
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop_all(signal.SIGINT)
        return 130
