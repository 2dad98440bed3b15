"""Horovod communicator: one ``allreduce`` with ``op=Average`` of the flat buffer per sync.

On GPUs this is Horovod's NCCL path; on CPUs Horovod reduces over MPI or gloo. Works
under ``mpirun`` (MPI controller) and ``horovodrun`` (MPI or gloo controller). Build
Horovod for the installed torch with ``scripts/build_horovod.sh``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from .base import Communicator

try:
    import horovod.torch as hvd
except ImportError as exc:  # keep the message actionable: 0.28.1 needs a patched build
    raise ImportError(f"horovod.torch is not importable ({exc}); build it for this torch with "
                      "scripts/build_horovod.sh (or `make horovod`)") from exc


class Horovod(Communicator):
    """Collectives through ``horovod.torch`` (initialised here if the caller did not)."""

    name = "horovod"

    def __init__(self) -> None:
        if not hvd.is_initialized():
            hvd.init()
        super().__init__(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size())
        self.nccl = hvd.nccl_built() and torch.cuda.is_available()

    def _allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor:
        hvd.allreduce_(flat, op=hvd.Average)
        return flat

    def _allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor:
        hvd.allreduce_(flat, op=hvd.Sum)
        return flat

    def _broadcast_(self, flat: torch.Tensor, root: int) -> torch.Tensor:
        hvd.broadcast_(flat, root_rank=root)
        return flat

    def _broadcast_object(self, obj: Any, root: int) -> Any:
        return hvd.broadcast_object(obj, root_rank=root)

    def _barrier(self) -> None:
        hvd.barrier()

    def abort(self, code: int = 1) -> None:
        # mpirun and horovodrun end the whole job when one rank exits non-zero.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def close(self) -> None:
        if hvd.is_initialized():
            hvd.shutdown()
