"""torch.distributed communicator: gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from typing import Any

import torch
import torch.distributed as dist

from .base import Communicator
from .env import DistEnv


class TorchDistributed(Communicator):
    """Collectives of an initialised ``torch.distributed`` process group.

    Pass ``group`` to use a group you created yourself; by default the world group. If the
    process group is not initialised yet, use :meth:`init` (or ``create("torch")``).
    """

    name = "torch"

    def __init__(self, group=None, *, local_rank: int | None = None,
                 local_size: int | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call "
                               "torch.distributed.init_process_group() first, or use "
                               "parle_hpc.comm.create('torch')")
        self.group = group
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        if local_rank is None:
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_size is None:
            local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
        super().__init__(rank, size, local_rank, local_size)
        self.backend = dist.get_backend(group)
        self._owns_group = False
        self._store = None
        self._after_destroy = None

    @classmethod
    def init(cls, env: DistEnv, *, device: torch.device,
             timeout: _dt.timedelta = _dt.timedelta(minutes=10)) -> TorchDistributed:
        """Initialise the default process group for ``env`` and wrap it.

        Rendezvous: ``MASTER_ADDR``/``MASTER_PORT`` when set (torchrun, ``parle-train
        --nproc``); else under an MPI launcher rank 0 opens a TCP store on a free port and
        sends its address over MPI; else under srun the first node of the allocation and a
        port derived from the job id.
        """
        backend = "nccl" if device.type == "cuda" else "gloo"
        store = _rendezvous_store(env, timeout)
        kwargs: dict[str, Any] = {"backend": backend, "rank": env.rank,
                                  "world_size": env.size, "timeout": timeout}
        if device.type == "cuda":
            kwargs["device_id"] = device
        if store is not None:
            kwargs["store"] = store
        else:
            kwargs["init_method"] = "env://"
        dist.init_process_group(**kwargs)
        comm = cls(local_rank=env.local_rank, local_size=env.local_size)
        comm._owns_group = True
        comm._store = store  # the store must outlive the process group
        if env.launcher == "mpi" and store is not None:
            from mpi4py import MPI

            comm._after_destroy = MPI.COMM_WORLD.Barrier
        return comm

    def _root(self, root: int) -> int:
        return root if self.group is None else dist.get_global_rank(self.group, root)

    def _allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor:
        if self.backend == "nccl":
            dist.all_reduce(flat, op=dist.ReduceOp.AVG, group=self.group)
        else:  # gloo has no AVG
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            flat.div_(self.size)
        return flat

    def _allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        return flat

    def _broadcast_(self, flat: torch.Tensor, root: int) -> torch.Tensor:
        dist.broadcast(flat, src=self._root(root), group=self.group)
        return flat

    def _broadcast_object(self, obj: Any, root: int) -> Any:
        box = [obj]
        device = torch.device("cuda", torch.cuda.current_device()) \
            if self.backend == "nccl" else None
        dist.broadcast_object_list(box, src=self._root(root), group=self.group, device=device)
        return box[0]

    def _barrier(self) -> None:
        dist.barrier(group=self.group)

    def abort(self, code: int = 1) -> None:
        # Exiting closes this rank's sockets: peers blocked in a collective then fail
        # with a connection error instead of waiting for the timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def close(self) -> None:
        """Leave the process group (collective: every rank calls it).

        A process that used gloo should end with :func:`hard_exit`: torch's gloo worker
        threads release tensors under the GIL, and one still doing so while Python
        finalises aborts the process (seen with torch 2.14 on loaded machines).
        """
        if self._owns_group and dist.is_initialized():
            # Leave together: a rank that tears down its group (and the TCP store rank 0
            # serves) while a peer is still inside a collective would crash that peer.
            dist.barrier(group=self.group)
            dist.destroy_process_group()
            self._owns_group = False
            if self._after_destroy is not None:
                # rank 0 serves the TCP store: keep it up until every rank has torn down
                self._after_destroy()
        self._store = None


def _rendezvous_store(env: DistEnv, timeout: _dt.timedelta):
    """A TCPStore for the job, or None to let ``env://`` read MASTER_ADDR/MASTER_PORT."""
    if os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
        return None
    if env.launcher == "mpi":
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise RuntimeError("torch.distributed under an MPI launcher needs MASTER_ADDR and "
                               "MASTER_PORT, or mpi4py to exchange them") from exc
        comm = MPI.COMM_WORLD
        store, address = None, None
        if env.rank == 0:
            host = socket.gethostname()
            store = dist.TCPStore(host, 0, env.size, is_master=True, timeout=timeout,
                                  wait_for_workers=False)
            address = (host, store.port)
        host, port = comm.bcast(address, root=0)
        if store is None:
            store = dist.TCPStore(host, port, env.size, is_master=False, timeout=timeout)
        return store
    if env.launcher == "slurm":
        nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST", "")
        host = _first_slurm_host(nodelist)
        port = 29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000
        return dist.TCPStore(host, port, env.size, is_master=env.rank == 0, timeout=timeout)
    raise RuntimeError("torch.distributed needs MASTER_ADDR and MASTER_PORT for this launcher "
                       f"({env.launcher}); set them, or launch with torchrun / parle-train --nproc")


def _first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list such as ``node[003-007,010],gpu1``."""
    if not nodelist:
        raise RuntimeError("SLURM_JOB_NODELIST is empty: cannot find the first node")
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                             capture_output=True, text=True, timeout=30).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head = nodelist.split(",")[0]
    if "[" not in head:
        return head
    prefix, rest = head.split("[", 1)
    return prefix + rest.split("-")[0].split(",")[0].rstrip("]")


def hard_exit(code: int = 0) -> None:
    """End the process now, skipping interpreter teardown (see :meth:`TorchDistributed.close`).

    Flushes the standard streams and finalises MPI first when mpi4py initialised it (the
    MPI rendezvous), as mpirun treats a rank that skips MPI_Finalize as failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()
    os._exit(code)
