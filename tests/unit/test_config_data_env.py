"""Configuration validation, packaged data and launcher discovery (no processes)."""

from __future__ import annotations

import pytest
import torch

from parle_hpc.comm import discover
from parle_hpc.config import ConfigError, load_config
from parle_hpc.data import ReplicaBatches, load_dataset, mnist5k_root


def test_demo_config_loads_with_overrides():
    cfg = load_config("configs/demo.yaml", ["parle.L=10", "optim.lr_schedule=null", "optim.lr=0.05"])
    assert cfg.parle.L == 10 and cfg.optim.lr == 0.05 and cfg.effective_rho0 == 1.0


@pytest.mark.parametrize("override,key", [
    (["parle.Lx=3"], "parle.Lx"),
    (["nosuch.key=1"], "nosuch"),
    (["parle.alpha=1.5"], "parle.alpha"),
    (["data.batch_size=abc"], "data.batch_size"),
    (["optim.method=adam"], "optim.method"),
    (["optim.lr=0.3"], "optim.lr"),  # disagrees with the schedule's first rate
    (["optim.method=sgd", "parle.L=5"], "parle.L"),
    (["parle.init=random"], "parle.init"),
])
def test_invalid_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("configs/demo.yaml", override)


def test_method_defaults():
    sgd = load_config(None, ["optim.method=sgd"])
    assert (sgd.effective_L, sgd.effective_rho0) == (0, 0.0)
    esgd = load_config(None, ["optim.method=entropy-sgd"])
    assert (esgd.effective_L, esgd.effective_rho0) == (25, 0.0)


def test_mnist5k_is_real_and_read_by_torchvision(tmp_path):
    root = mnist5k_root(tmp_path)
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 3136016
    ds = load_dataset("mnist5k", root)
    assert ds.train.images.shape == (4000, 1, 28, 28) and ds.val.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [400] * 10
    # a corrupted cache file is detected and rewritten
    f = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    f.write_bytes(b"garbage")
    mnist5k_root(tmp_path)
    assert f.stat().st_size == 1008


def test_missing_dataset_says_where_and_what_to_do(tmp_path):
    from parle_hpc.data import DatasetMissing

    with pytest.raises(DatasetMissing, match=str(tmp_path)):
        load_dataset("mnist", tmp_path, download=False)


def test_replica_batches_deterministic_and_distinct():
    a1 = [next(ReplicaBatches(100, 10, rank=0, size=2, seed=3)) for _ in range(1)]
    a2 = [next(ReplicaBatches(100, 10, rank=0, size=2, seed=3)) for _ in range(1)]
    b = next(ReplicaBatches(100, 10, rank=1, size=2, seed=3))
    assert torch.equal(a1[0], a2[0]) and not torch.equal(a1[0], b)
    s = ReplicaBatches(105, 10, rank=0, size=1)
    assert s.batches_per_epoch == 10
    seen = torch.cat([next(s) for _ in range(10)])
    assert len(set(seen.tolist())) == 100  # one pass: no repeats, last partial batch dropped


def test_frac_shards_are_contiguous_in_a_fixed_shuffle():
    shards = [ReplicaBatches(100, 5, rank=a, size=4, seed=0, frac=0.5).indices for a in range(4)]
    assert all(len(s) == 50 for s in shards)
    assert torch.equal(shards[0][25:], shards[1][:25])   # replica 1 starts 25% later
    assert torch.equal(shards[1][25:], shards[2][:25])
    assert torch.equal(shards[3][25:], shards[0][:25])   # the last shard wraps around
    assert not set(shards[0].tolist()) & set(shards[2].tolist())
    assert set(shards[0].tolist()) | set(shards[2].tolist()) == set(range(100))


@pytest.mark.parametrize("env,expected", [
    ({}, (0, 1, 0, 1, "none")),
    ({"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3"}, (2, 3, 2, 3, "torchrun")),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, (1, 4, 1, 2, "mpi")),
    ({"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
      "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_NTASKS": "8"}, (5, 8, 1, 4, "slurm")),
    ({"SLURM_PROCID": "6", "SLURM_STEP_NUM_TASKS": "11", "SLURM_LOCALID": "2", "SLURM_NODEID": "2",
      "SLURM_STEP_TASKS_PER_NODE": "4(x2),3"}, (6, 11, 2, 3, "slurm")),  # uneven nodes
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}, (0, 1, 0, 1, "none")),  # inside sbatch, not srun
])
def test_discover(env, expected):
    d = discover(env)
    assert (d.rank, d.size, d.local_rank, d.local_size, d.launcher) == expected
