"""One small Communicator interface, several backends.

``create("auto")`` discovers rank/size from the launcher and picks a transport:

* one process: :class:`Single`;
* under ``horovodrun --gloo``, or GPUs under ``mpirun`` with Horovod importable:
  :class:`Horovod` (NCCL allreduce on GPUs);
* CPU under an MPI launcher (``mpirun``) with mpi4py importable: :class:`MPI` (Open MPI's
  shared memory beats gloo's TCP loopback on one node);
* otherwise :class:`TorchDistributed` (gloo on CPU, NCCL on GPU).

``backend="single"|"torch"|"mpi"|"horovod"`` forces a choice. A user who already set up
a process group, an mpi4py communicator or Horovod constructs the class directly.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import logging

import torch

from .base import CommStats, Communicator
from .env import DistEnv, discover
from .single import Single

__all__ = ["BACKENDS", "CommStats", "Communicator", "DistEnv", "Horovod", "MPI", "Single",
           "TorchDistributed", "create", "discover"]

BACKENDS = ("auto", "single", "torch", "mpi", "horovod")
log = logging.getLogger(__name__)


def __getattr__(name: str):
    # Backends import their libraries lazily, so `import parle_hpc.comm` needs none of them.
    if name == "TorchDistributed":
        from .torch_dist import TorchDistributed
        return TorchDistributed
    if name == "MPI":
        from .mpi import MPI
        return MPI
    if name == "Horovod":
        try:
            from .horovod import Horovod
        except ImportError as exc:
            raise ImportError("the Horovod communicator is not available in this install: "
                              f"{exc}") from exc
        return Horovod
    raise AttributeError(name)


def choose_backend(env: DistEnv, device: torch.device) -> tuple[str, str]:
    """``(backend, reason)`` that ``create("auto")`` would use."""
    if env.size == 1:
        return "single", "one process"
    if env.launcher == "horovod":
        return "horovod", "launched by horovodrun (gloo controller)"
    if device.type == "cuda" and env.launcher == "mpi" and importlib.util.find_spec("horovod"):
        return "horovod", "GPU ranks under an MPI launcher with Horovod: NCCL allreduce"
    if device.type == "cpu" and env.launcher == "mpi" and importlib.util.find_spec("mpi4py"):
        return "mpi", "CPU ranks under an MPI launcher: MPI shared memory beats gloo TCP"
    return "torch", f"torch.distributed ({'nccl' if device.type == 'cuda' else 'gloo'})"


def create(backend: str = "auto", *, env: DistEnv | None = None,
           device: torch.device | str = "cpu",
           timeout: _dt.timedelta = _dt.timedelta(minutes=10)) -> Communicator:
    """Build the communicator for this process; see the module docstring for ``auto``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    env = discover() if env is None else env
    device = torch.device(device)
    reason = "asked for"
    if backend == "auto":
        backend, reason = choose_backend(env, device)
    if backend == "single":
        if env.size != 1:
            raise ValueError(f"backend 'single' in a job of {env.size} processes")
        comm: Communicator = Single()
    elif backend == "mpi":
        from .mpi import MPI
        comm = MPI()
    elif backend == "torch":
        from .torch_dist import TorchDistributed
        comm = TorchDistributed.init(env, device=device, timeout=timeout)
    else:
        comm = __getattr__("Horovod")()
    if comm.size != env.size:
        raise RuntimeError(f"backend {backend} sees {comm.size} ranks but the launcher "
                           f"started {env.size}")
    comm.selected_because = reason
    log.debug("communicator %s: %s", comm.name, reason)
    return comm
