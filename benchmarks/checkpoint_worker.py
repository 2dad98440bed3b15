"""One rank of benchmark 5 (run under ``mpirun -np N``): checkpoint I/O of N replicas vs dd.

    mpirun -np 3 python -m benchmarks.checkpoint_worker --model lenet --reps 3 --dir D --out F.json

Every rank holds a real replica (model, Parle optimizer state, sampler, RNGs) captured with
``capture_replica``, exactly what training checkpoints. Per repetition, interleaved:

* ``write_gathered``: ``save_checkpoint(parallel=False)``: replicas sent to rank 0, which writes;
* ``write_parallel``: ``save_checkpoint(parallel=True)``: all ranks write one file through
  HDF5's mpio driver (only when h5py is built with MPI);
* ``dd_write``: ``dd if=/dev/zero of=F bs=1M count=<file size in MiB> conv=fsync`` on rank 0,
  into the same directory (both checkpoint paths fsync too);
* ``read_cold`` / ``read_warm``: ``read_checkpoint`` (every dataset of every replica) of the
  gathered path's file on rank 0, with the file's pages first dropped from the page cache
  (``posix_fadvise DONTNEED``, this file only) or left there; ``read_cold_parallel_file``:
  the same for the parallel path's file (no Fletcher-32 filter, contiguous datasets);
* ``validate_warm``: ``validate_checkpoint`` (every dataset read and its SHA-256 compared),
  what ``--resume auto`` does to each file it considers;
* ``dd_read_cold``: ``dd if=F of=/dev/null bs=1M`` of the dd file after dropping its pages.

Each is bracketed by barriers and reported as the slowest rank's seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mpi4py import MPI

from .common import interleaved, stats


def _drop_from_page_cache(path: Path) -> None:
    """Evict ``path``'s clean pages so the next read comes from the disk (this file only:
    dropping the whole page cache would slow everyone else on the machine)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _replica(comm, model_name: str):
    from parle_hpc.checkpoint import capture_replica, reference_arrays
    from parle_hpc.data.sampling import ReplicaBatches
    from parle_hpc.models import build
    from parle_hpc.optim import Parle

    torch.manual_seed(comm.rank)
    model = build(model_name)
    opt = Parle(model.parameters(), comm=comm, lr=0.1, L=5, batches_per_epoch=31)
    sampler = ReplicaBatches(4000, 128, rank=comm.rank, size=comm.size, seed=0)
    next(sampler)  # a pass in progress, as in training
    replica = capture_replica(model, opt, sampler)
    reference = reference_arrays(model) if comm.rank == 0 else {}
    meta = {"step": 0, "epoch": 0.0, "sync": 0, "model": model_name, "method": "parle",
            "config": {}, "loop": "{}"}
    return replica, reference, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint_worker")
    p.add_argument("--model", default="lenet")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import h5py

    from parle_hpc.checkpoint import read_checkpoint, save_checkpoint, validate_checkpoint
    from parle_hpc.comm import create

    comm = create("mpi")
    world = MPI.COMM_WORLD
    root = comm.rank == 0
    directory = Path(args.dir)
    ckpt, raw = directory / "ckpt-bench.h5", directory / "dd-bench.bin"
    ckpt_parallel = directory / "ckpt-bench-parallel.h5"
    try:
        replica, reference, meta = _replica(comm, args.model)
        save_checkpoint(ckpt, comm=comm, replica=replica, reference=reference, meta=meta,
                        parallel=False)  # once untimed: the file size sets dd's count
        size = world.bcast(ckpt.stat().st_size if root else None, root=0)
        mib = math.ceil(size / 2**20)

        def bracketed(op: Callable[[], object], everyone: bool) -> Callable[[], float]:
            def candidate() -> float:
                world.Barrier()
                start = time.perf_counter()
                if everyone or root:
                    op()
                world.Barrier()  # a collective write ends when its last rank is done
                return time.perf_counter() - start
            return candidate

        def drop_then(path: Path, op: Callable[[], object]) -> Callable[[], float]:
            def candidate() -> float:
                if root:
                    _drop_from_page_cache(path)
                return bracketed(op, everyone=False)()
            return candidate

        def dd(*dd_args: str) -> None:
            subprocess.run(["dd", *dd_args], check=True, capture_output=True)

        def write(parallel: bool) -> Callable[[], object]:
            path = ckpt_parallel if parallel else ckpt
            return lambda: save_checkpoint(path, comm=comm, replica=replica, reference=reference,
                                           meta=meta, parallel=parallel)

        candidates: dict[str, Callable[[], float]] = {
            "write_gathered": bracketed(write(False), everyone=True)}
        parallel_ok = bool(h5py.get_config().mpi) and comm.size > 1
        if parallel_ok:
            candidates["write_parallel"] = bracketed(write(True), everyone=True)
        candidates.update({
            "dd_write": bracketed(lambda: dd("if=/dev/zero", f"of={raw}", "bs=1M",
                                             f"count={mib}", "conv=fsync"), everyone=False),
            "read_cold": drop_then(ckpt, lambda: read_checkpoint(ckpt)),
            "read_warm": bracketed(lambda: read_checkpoint(ckpt), everyone=False),
            "validate_warm": bracketed(lambda: validate_checkpoint(ckpt), everyone=False),
            "dd_read_cold": drop_then(raw, lambda: dd(f"if={raw}", "of=/dev/null", "bs=1M")),
        })
        if parallel_ok:
            candidates["read_cold_parallel_file"] = drop_then(
                ckpt_parallel, lambda: read_checkpoint(ckpt_parallel))
        samples = interleaved(candidates, args.reps, warmup=1)
        parallel_size = world.bcast(ckpt_parallel.stat().st_size if root and parallel_ok else None)
        result: dict[str, Any] = {"model": args.model, "replicas": comm.size, "reps": args.reps,
                                  "file_bytes": size, "parallel_file_bytes": parallel_size,
                                  "dd_mib": mib,
                                  "parallel_hdf5": parallel_ok, "times": {}}
        for name, values in samples.items():
            slowest = np.asarray(values, dtype=np.float64)
            world.Allreduce(MPI.IN_PLACE, slowest, op=MPI.MAX)
            result["times"][name] = stats(slowest.tolist())
        if root:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            for path in (ckpt, ckpt_parallel, raw):
                path.unlink(missing_ok=True)
        world.Barrier()
    except BaseException:  # noqa: BLE001 - never leave the other ranks blocked
        traceback.print_exc()
        comm.abort(1)
    comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
