"""The Communicator interface every backend implements.

The optimizer and the training loop only ever call these methods; each backend maps
them onto one collective of its library. Every call is counted and timed in
:attr:`Communicator.stats`, so tests can assert "one collective per sync" and the
metrics can split wall-clock time into compute and communication.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CommStats:
    """Counters of the collectives a communicator ran (per op name)."""

    calls: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, op: str, nbytes: int, seconds: float) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        self.bytes[op] = self.bytes.get(op, 0) + nbytes
        self.seconds[op] = self.seconds.get(op, 0.0) + seconds

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def snapshot(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "bytes": dict(self.bytes),
                "seconds": dict(self.seconds)}


class Communicator(abc.ABC):
    """rank/size/local_rank plus the handful of collectives Parle needs.

    Every rank must call the collectives in the same order. ``abort`` ends the whole job
    (all ranks) so that a failing rank never leaves the others blocked.
    """

    name: str = "abstract"

    def __init__(self, rank: int, size: int, local_rank: int = 0, local_size: int = 1) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} out of range for size {size}")
        self.rank = rank
        self.size = size
        self.local_rank = local_rank
        self.local_size = local_size
        self.stats = CommStats()

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that logs and writes shared files."""
        return self.rank == 0

    # -- timed wrappers (public API) --------------------------------------------------
    def allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor:
        """Replace ``flat`` (one contiguous tensor) by its mean over ranks, in place."""
        if not flat.is_contiguous():
            raise ValueError("allreduce_mean_ needs a contiguous tensor")
        return self._timed("allreduce", flat, self._allreduce_mean_, flat)

    def allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor:
        """Replace ``flat`` by its sum over ranks, in place (small metric tensors)."""
        if not flat.is_contiguous():
            raise ValueError("allreduce_sum_ needs a contiguous tensor")
        return self._timed("allreduce_sum", flat, self._allreduce_sum_, flat)

    def broadcast_(self, flat: torch.Tensor, root: int = 0) -> torch.Tensor:
        """Overwrite ``flat`` on every rank with its value on ``root``, in place."""
        if not flat.is_contiguous():
            raise ValueError("broadcast_ needs a contiguous tensor")
        return self._timed("broadcast", flat, self._broadcast_, flat, root)

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """Return ``root``'s ``obj`` on every rank (small control messages only)."""
        start = time.perf_counter()
        out = self._broadcast_object(obj, root)
        self.stats.record("broadcast_object", 0, time.perf_counter() - start)
        return out

    def barrier(self) -> None:
        start = time.perf_counter()
        self._barrier()
        self.stats.record("barrier", 0, time.perf_counter() - start)

    @abc.abstractmethod
    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (never returns)."""

    def close(self) -> None:
        """Release the backend's resources (default: nothing to do)."""

    def _timed(self, op: str, flat: torch.Tensor, fn, *args):
        if flat.is_cuda:
            torch.cuda.synchronize(flat.device)
        start = time.perf_counter()
        out = fn(*args)
        if flat.is_cuda:
            torch.cuda.synchronize(flat.device)
        self.stats.record(op, flat.numel() * flat.element_size(), time.perf_counter() - start)
        return out

    # -- backend hooks ----------------------------------------------------------------
    @abc.abstractmethod
    def _allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _broadcast_(self, flat: torch.Tensor, root: int) -> torch.Tensor: ...

    @abc.abstractmethod
    def _broadcast_object(self, obj: Any, root: int) -> Any: ...

    @abc.abstractmethod
    def _barrier(self) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"
