"""Discover rank, world size and local rank once, from whatever launched this process.

Launchers and what they set:

=============  ==================================================================
horovodrun     HOROVOD_RANK/_SIZE/_LOCAL_RANK/_LOCAL_SIZE (gloo controller)
torchrun       RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT
parle-train    the same variables (``--nproc N`` spawns local processes)
Open MPI       OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK/_LOCAL_SIZE
MPICH/Hydra    PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS
SLURM srun     SLURM_PROCID, SLURM_STEP_NUM_TASKS (srun only), SLURM_LOCALID, ...
=============  ==================================================================

Nothing deeper in the package reads these variables: the :class:`DistEnv` built here
is passed down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launcher: str = "none"  # torchrun | horovod | mpi | slurm | none

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.size):
            raise ValueError(f"rank {self.rank} is outside world size {self.size}")
        if not (0 <= self.local_rank < self.local_size):
            raise ValueError(f"local rank {self.local_rank} is outside local size {self.local_size}")


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return int(value)
    return None


def discover(env: Mapping[str, str] | None = None) -> DistEnv:
    """Build a :class:`DistEnv` from the launcher's environment variables."""
    env = os.environ if env is None else env
    rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and size is not None:
        local_rank = _int(env, "LOCAL_RANK") or 0
        local_size = _int(env, "LOCAL_WORLD_SIZE") or size
        return DistEnv(rank, size, local_rank, local_size, "torchrun")
    rank, size = _int(env, "HOROVOD_RANK"), _int(env, "HOROVOD_SIZE")
    if rank is not None and size is not None:  # horovodrun's gloo controller
        local_rank = _int(env, "HOROVOD_LOCAL_RANK") or 0
        local_size = _int(env, "HOROVOD_LOCAL_SIZE") or size
        return DistEnv(rank, size, local_rank, local_size, "horovod")
    rank, size = _int(env, "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"), \
        _int(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
    if rank is not None and size is not None:
        local_rank = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID") or 0
        local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS") or size
        return DistEnv(rank, size, local_rank, local_size, "mpi")
    # SLURM_STEP_NUM_TASKS is set by srun only; a batch script's single process has
    # SLURM_NTASKS > 1 without being one of several ranks.
    rank, size = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS")
    if rank is not None and size is not None:
        local_rank = _int(env, "SLURM_LOCALID") or 0
        per_node = _slurm_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE", ""))
        node = _int(env, "SLURM_NODEID") or 0  # this task's node within the step
        local_size = per_node[node] if node < len(per_node) else size
        return DistEnv(rank, size, local_rank, max(local_size, local_rank + 1), "slurm")
    return DistEnv()


def _slurm_tasks_per_node(spec: str) -> list[int]:
    """``"4(x2),3"`` -> ``[4, 4, 3]``: SLURM's compressed tasks-per-node list, expanded."""
    counts: list[int] = []
    for item in filter(None, spec.split(",")):
        count, _, repeat = item.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts
