"""parle-overlap on a real checkpoint from the training pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_job

pytestmark = pytest.mark.slow


def test_overlap_cli_on_a_tiny_real_run(tmp_path: Path):
    run_dir = tmp_path / "run"
    res = run_job([sys.executable, "-m", "parle_hpc.train", "--config", "configs/demo.yaml",
                   "train.max_syncs=2", "train.epochs=1", f"out_dir={run_dir}"], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    ckpt = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))[-1]

    # The console script pyproject.toml registers (pip install -e . puts it next to python).
    script = Path(sys.executable).parent / "parle-overlap"
    assert script.is_file(), "parle-overlap not installed: run pip install -e . --no-deps"
    out = tmp_path / "overlap"
    res = run_job([str(script), str(ckpt), "--out", str(out)], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "null baseline" in res.stdout and "pair 1/1" in res.stdout  # progress (not a tty)

    report = json.loads((out / "overlap.json").read_text())
    assert report["model"] == "lenet"
    assert [n["label"] for n in report["networks"]] == ["replica 0", "reference"]
    aligned = np.array(report["aligned"])
    assert aligned.shape == (2, 2)
    np.testing.assert_allclose(aligned, aligned.T)
    np.testing.assert_allclose(np.diag(aligned), 1.0)
    # One replica: the reference is the mean of one network, i.e. that network.
    assert aligned[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert report["null_baseline"]["unaligned"] < report["null_baseline"]["overlap"] < 0.5
    assert (out / "overlap.png").stat().st_size > 10_000

    # The run directory works as well as the file; --barrier reads the run's dataset.
    res = run_job([str(script), str(run_dir), "--out", str(tmp_path / "o2"), "--quiet",
                   "--barrier", "--points", "3", "--bn-images", "500", "--eval-images", "500"],
                  timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    pair = json.loads((tmp_path / "o2" / "overlap.json").read_text())["pairs"][0]
    assert len(pair["barrier"]["aligned"]["loss"]) == 3
    # Replica and reference share their weights: the line between them is one point.
    assert abs(pair["barrier"]["aligned"]["barrier_loss"]) < 1e-4
    assert (tmp_path / "o2" / "barrier.png").stat().st_size > 10_000
    # A bad path is an error (exit 2).
    assert run_job([str(script), str(tmp_path / "nothing"), "--out", str(tmp_path / "o3")],
                   timeout=120).returncode == 2
