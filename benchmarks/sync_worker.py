"""One rank of benchmark 2 (run under ``mpirun -np N``): Parle's sync vs a bare allreduce
vs the reference implementation's reduce-and-broadcast, on one backend.

    mpirun -np 2 python -m benchmarks.sync_worker --backend mpi --models lenet --reps 20 --out F.json

Per model size and repetition, interleaved, each bracketed by an MPI barrier so that all
ranks start together, and reported as the slowest rank's time (a collective ends when its
last rank is done):

* ``parle_sync``: ``Communicator.allreduce_mean_`` of a P-float contiguous buffer, the call
  Parle's step makes at each of its two syncs per outer step;
* ``bare_allreduce``: the backend's own in-place sum-allreduce of the same bytes, no wrapper;
* ``parle_step_sync``: half the collective seconds ``comm.stats`` records inside a real
  ``Parle.step()`` that ends an outer step (L = 1), so it includes waiting for the ranks'
  arithmetic to line up, as in training;
* ``reference_sync`` (mpi backend only): one ``sync_with_master`` of the authors' script
  (:mod:`benchmarks.reference_sync`) over the model's parameter tensors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mpi4py import MPI  # initialise MPI (threads: multiple) before Horovod or gloo start threads

from .common import interleaved, stats


def _bracketed(world, op: Callable[[], object]) -> Callable[[], float]:
    def candidate() -> float:
        world.Barrier()
        start = time.perf_counter()
        op()
        return time.perf_counter() - start
    return candidate


def _bare_allreduce(comm, flat: torch.Tensor) -> Callable[[], object]:
    """The backend's in-place SUM allreduce of ``flat``, called directly."""
    if comm.name == "mpi":
        array = flat.numpy()
        return lambda: comm.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
    if comm.name == "torch":
        import torch.distributed as dist

        return lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    if comm.name == "horovod":
        import horovod.torch as hvd

        return lambda: hvd.allreduce_(flat, op=hvd.Sum, name="bare")
    raise ValueError(f"no bare allreduce for backend {comm.name}")


def _parle_step(comm, model: torch.nn.Module) -> tuple[Callable[[], float], dict[str, int]]:
    """A real Parle optimizer (L = 1: every step syncs) and a candidate timing its syncs."""
    from parle_hpc.optim import Parle

    opt = Parle(model.parameters(), comm=comm, lr=0.01, L=1, batches_per_epoch=31)
    with torch.no_grad():
        for p in model.parameters():
            p.grad.normal_()
    seen: dict[str, int] = {}

    def candidate() -> float:
        s = comm.stats
        calls, nbytes, seconds = (s.calls.get("allreduce", 0), s.bytes.get("allreduce", 0),
                                  s.seconds.get("allreduce", 0.0))
        MPI.COMM_WORLD.Barrier()
        opt.step()
        seen["calls"] = s.calls["allreduce"] - calls
        seen["bytes"] = s.bytes["allreduce"] - nbytes
        return (s.seconds["allreduce"] - seconds) / max(1, seen["calls"])
    return candidate, seen


def measure(comm, model_name: str, reps: int) -> dict[str, Any]:
    from parle_hpc.models import build

    torch.manual_seed(comm.rank)
    model = build(model_name)
    shapes = [tuple(p.shape) for p in model.parameters()]
    P = sum(p.numel() for p in model.parameters())
    world = MPI.COMM_WORLD
    flat = torch.randn(P)
    bare = torch.randn(P)
    step, seen = _parle_step(comm, model)
    candidates = {"parle_sync": _bracketed(world, lambda: comm.allreduce_mean_(flat)),
                  "bare_allreduce": _bracketed(world, _bare_allreduce(comm, bare)),
                  "parle_step_sync": step}
    if comm.name == "mpi":
        from .reference_sync import ReferenceSync

        ref = ReferenceSync(world, shapes, seed=comm.rank)
        candidates["reference_sync"] = _bracketed(world, ref.sync_with_master)
    samples = interleaved(candidates, reps, warmup=2)
    out: dict[str, Any] = {"model": model_name, "P": P, "bytes": 4 * P, "tensors": len(shapes),
                           "parle_step_collectives": dict(seen), "times": {}}
    for name, values in samples.items():
        slowest = np.asarray(values, dtype=np.float64)
        world.Allreduce(MPI.IN_PLACE, slowest, op=MPI.MAX)  # the slowest rank's time per rep
        out["times"][name] = stats(slowest.tolist())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sync_worker")
    p.add_argument("--backend", required=True, choices=("mpi", "torch", "horovod"))
    p.add_argument("--models", default="lenet")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # ranks share 2 cores: one thread each, as parle-train does
    from parle_hpc.comm import create

    comm = create(args.backend)
    rc = 0
    try:
        results = [measure(comm, name, args.reps) for name in args.models.split(",")]
        if comm.rank == 0:
            info: dict[str, Any] = {"backend": comm.name, "ranks": comm.size, "reps": args.reps,
                                    "results": results}
            if comm.name == "horovod":
                import horovod.torch as hvd

                info["horovod"] = {"mpi_enabled": hvd.mpi_enabled(), "gloo_enabled": hvd.gloo_enabled()}
            Path(args.out).write_text(json.dumps(info, indent=2) + "\n")
        MPI.COMM_WORLD.Barrier()
    except BaseException:  # noqa: BLE001 - never leave the other ranks blocked
        traceback.print_exc()
        comm.abort(1)
    comm.close()
    if comm.name == "torch":
        from parle_hpc.comm.torch_dist import hard_exit

        hard_exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
