"""Device choice per rank. This machine has no GPU, so GPU counts are stood in for by
patching ``torch.cuda``'s queries; the CPU case runs for real."""

from __future__ import annotations

import pytest
import torch

from parle_hpc.train.loop import select_device


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)`` makes ``n`` GPUs visible to this process; returns the set_device calls."""
    chosen: list[int] = []

    def make(n: int) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
        return chosen

    monkeypatch.delenv("SLURM_GPUS_PER_TASK", raising=False)
    return make


def test_cpu_without_gpus():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert select_device("auto", 0, 3) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        select_device("cuda", 0, 1)


def test_one_gpu_per_rank_by_local_rank(gpus):
    chosen = gpus(4)
    assert select_device("auto", 2, 4) == torch.device("cuda", 2)
    assert chosen == [2]
    assert select_device("cpu", 2, 4) == torch.device("cpu")


def test_more_ranks_than_gpus_is_an_error_unless_oversubscribed(gpus):
    gpus(2)
    with pytest.raises(RuntimeError, match="4 ranks on this node but only 2 GPU"):
        select_device("auto", 3, 4)
    assert select_device("auto", 3, 4, oversubscribe=True) == torch.device("cuda", 1)


@pytest.mark.parametrize("value", ["1", "a100:1", "2"])
def test_srun_gpus_per_task_binds_each_rank_to_its_own_gpu(gpus, monkeypatch, value):
    chosen = gpus(1)
    monkeypatch.setenv("SLURM_GPUS_PER_TASK", value)
    assert select_device("auto", 3, 4) == torch.device("cuda", 0)
    assert chosen == [0]


def test_gpus_per_task_without_binding_still_uses_the_local_rank(gpus, monkeypatch):
    gpus(4)  # --gpus-per-task=1 --gpu-bind=none: every rank sees the node's 4 GPUs
    monkeypatch.setenv("SLURM_GPUS_PER_TASK", "1")
    assert select_device("auto", 3, 4) == torch.device("cuda", 3)
