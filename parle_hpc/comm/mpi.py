"""mpi4py communicator: in-place Allreduce on the contiguous buffer."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from .base import Communicator


class MPI(Communicator):
    """Collectives over an mpi4py communicator (``MPI.COMM_WORLD`` by default).

    CPU tensors are reduced in place through a zero-copy NumPy view. CUDA tensors go
    straight to MPI when it is CUDA-aware (``PARLE_CUDA_AWARE_MPI=1``, or Open MPI
    reporting CUDA support), else through a reused host staging buffer.
    """

    name = "mpi"

    def __init__(self, comm=None) -> None:
        from mpi4py import MPI as _MPI

        self._MPI = _MPI
        self.comm = _MPI.COMM_WORLD if comm is None else comm
        local = self.comm.Split_type(_MPI.COMM_TYPE_SHARED)
        super().__init__(self.comm.Get_rank(), self.comm.Get_size(),
                         local.Get_rank(), local.Get_size())
        local.Free()
        self.cuda_aware = _cuda_aware(_MPI)
        self._staging: torch.Tensor | None = None

    def _host(self, flat: torch.Tensor) -> torch.Tensor:
        if not flat.is_cuda or self.cuda_aware:
            return flat
        if (self._staging is None or self._staging.numel() < flat.numel()
                or self._staging.dtype != flat.dtype):
            self._staging = torch.empty(flat.numel(), dtype=flat.dtype, pin_memory=True)
        host = self._staging[:flat.numel()]
        host.copy_(flat)
        return host

    def _buffer(self, tensor: torch.Tensor):
        if tensor.is_cuda:
            return tensor  # CUDA-aware path: mpi4py reads __cuda_array_interface__
        if tensor.dtype == torch.bfloat16:
            raise TypeError("MPI has no bfloat16 type; keep Parle's buffers in float32/float64")
        return tensor.numpy()

    def _allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor:
        host = self._host(flat)
        self.comm.Allreduce(self._MPI.IN_PLACE, self._buffer(host), op=self._MPI.SUM)
        if host is not flat:
            flat.copy_(host)
        return flat

    def _allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor:
        return self._allreduce_sum_(flat).div_(self.size)

    def _broadcast_(self, flat: torch.Tensor, root: int) -> torch.Tensor:
        host = self._host(flat)
        self.comm.Bcast(self._buffer(host), root=root)
        if host is not flat:
            flat.copy_(host)
        return flat

    def _broadcast_object(self, obj: Any, root: int) -> Any:
        return self.comm.bcast(obj, root=root)

    def _barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


def _cuda_aware(_MPI) -> bool:
    flag = os.environ.get("PARLE_CUDA_AWARE_MPI")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    query = getattr(_MPI, "Query_cuda_support", None)
    if query is not None:
        try:
            return bool(query())
        except Exception:  # noqa: BLE001 - an MPI without the extension says nothing
            return False
    return False
