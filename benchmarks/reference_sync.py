"""A faithful re-creation of the reference implementation's sync, for benchmark 2.

The authors' later public MPI script (``parle_mpi.py`` in github.com/ucla-vision/parle)
synchronises a replica with its ``sync_with_master(xa, x)``, called **twice per outer
step** (once for the averages ``z``, once for the anchors ``x``). Per call it:

1. for every parameter tensor ``p``, one after the other: moves the replica's tensor to
   host memory as NumPy (``.cpu().numpy()``), ``comm.Reduce``s it (SUM) into a per-tensor
   host cache on rank 0, and wraps the array back as a tensor (``th.from_numpy``);
2. reduces the one-number training loss to rank 0 (``comm.Reduce(s['f'], s['favg'])``);
3. ``comm.Barrier()``;
4. on rank 0, divides every cached sum by ``n`` (a new array per tensor);
5. for every parameter tensor, ``comm.Bcast``s rank 0's array to all ranks;
6. ``comm.Barrier()``.

That is ``2 * tensors + 1`` rooted collectives plus two barriers per call, where Parle
(here) does one allreduce of one contiguous buffer. Only the communication is re-created:
the arithmetic around it belongs to the optimizer, which benchmark 1 measures. On a CPU
machine ``.cpu()`` is free; on GPUs each call adds a device-to-host and a host-to-device
copy per tensor, which this CPU-only re-creation cannot show. The published script never
creates ``s['f']`` and ``s['favg']`` (it would stop with a KeyError); they are taken to be
one-element float64 arrays, which is what the Reduce of a Python loss value needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class ReferenceSync:
    """``sync_with_master`` over tensors shaped like a model's parameters."""

    def __init__(self, mpi_comm, shapes: Sequence[tuple[int, ...]], seed: int = 0) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = mpi_comm
        self.rank, self.n = mpi_comm.Get_rank(), mpi_comm.Get_size()
        gen = torch.Generator().manual_seed(seed + self.rank)
        # xa[p]: the replica's tensors; cache[p] and x[p]: host arrays, as the script keeps them
        self.tensors = [torch.randn(shape, generator=gen) for shape in shapes]
        self.cache = [t.numpy().copy() for t in self.tensors]
        self.x = [t.numpy().copy() for t in self.tensors]
        self.f = np.zeros(1)
        self.favg = np.zeros(1)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)

    def sync_with_master(self) -> None:
        """One call of the script's ``sync_with_master`` (a Parle outer step makes two)."""
        MPI, comm = self._MPI, self.comm
        for k, tensor in enumerate(self.tensors):
            host = tensor.cpu().numpy()
            comm.Reduce(host, self.cache[k], op=MPI.SUM, root=0)
            self.tensors[k] = torch.from_numpy(host)
        comm.Reduce(self.f, self.favg, op=MPI.SUM, root=0)
        comm.Barrier()
        if self.rank == 0:
            for k, cached in enumerate(self.cache):
                self.x[k] = cached / float(self.n)
        for k in range(len(self.x)):
            comm.Bcast(self.x[k], root=0)
        comm.Barrier()
