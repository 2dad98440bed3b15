"""Data-parallel SGD over ranks equals single-process SGD on the concatenated batch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import mpirun_cmd, run_job
from spec_reference import TinyNet, global_batch

WORKER = Path(__file__).with_name("dpsgd_worker.py")
pytestmark = pytest.mark.mpi


def _serial_sgd(steps: int) -> np.ndarray:
    model = TinyNet(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for k in range(steps):
        x, y = global_batch(k)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


@pytest.mark.parametrize("n,backend", [(2, "mpi"), (3, "mpi"), (2, "torch")])
def test_dp_sgd_equals_sgd_on_the_concatenated_batch(tmp_path, n, backend):
    res = run_job(mpirun_cmd(n) + [sys.executable, str(WORKER), backend, str(tmp_path)], timeout=180)
    assert res.returncode == 0, res.stdout[-4000:]
    expected = _serial_sgd(20)
    for rank in range(n):
        r = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(r["params"], expected, rtol=0, atol=1e-5)
        assert int(r["allreduces"]) == 20  # one gradient allreduce per minibatch
    assert np.abs(expected - _serial_sgd(0)).max() > 1e-2  # it trained
