"""Every config in configs/ starts: one sync of each on tiny stand-in data, one process.

``n`` is the launcher's choice, so a config written for n replicas runs as one here; the
inner loop is cut to one step (``parle.L=1``) for the methods that have one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_job
from parle_hpc.config import load_config
from standin_data import write_cifar10, write_cifar100, write_mnist, write_svhn

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "parle_hpc.train"]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    # As small as one minibatch of 8 allows (per replica: CIFAR-10 has 25% shards, 35 // 4 = 8),
    # which keeps the WRN-28-10 runs, BN re-estimation and evaluation included, to seconds.
    root = tmp_path_factory.mktemp("tiny")
    write_mnist(root, n_train=8, n_test=8)
    write_cifar10(root, n_per_batch=7, n_test=8)
    write_cifar100(root, n_train=8, n_test=8)
    write_svhn(root, n_train=4, n_extra=4, n_test=8)
    return root


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_starts_and_completes_one_sync(config, tiny_root, tmp_path):
    inner = ["parle.L=1"] if load_config(config).effective_L > 0 else []
    out = tmp_path / "run"
    res = run_job(TRAIN + ["--config", str(config), f"data.root={tiny_root}", "train.max_syncs=1",
                           "train.epochs=1", "data.batch_size=8", "data.eval_batch_size=16",
                           "checkpoint.enabled=false", f"out_dir={out}", *inner], timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["sync"] for r in records if r["type"] == "sync"] == [1]
    assert [r["epoch"] for r in records if r["type"] == "val"] == [1]
    assert json.loads((out / "summary.json").read_text())["syncs"] == 1


def test_missing_dataset_stops_at_once_with_the_staging_command(tmp_path):
    empty = tmp_path / "data"
    res = run_job(TRAIN + ["--config", str(ROOT / "configs" / "allcnn-cifar10-parle-n3.yaml"),
                           f"data.root={empty}", f"out_dir={tmp_path / 'run'}"], timeout=120)
    assert res.returncode != 0
    assert f"not found under {empty}" in res.stdout
    assert f"parle-data download cifar10 --root {empty}" in res.stdout
