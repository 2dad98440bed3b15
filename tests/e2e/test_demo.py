"""The demo end to end: real processes, real digits, real files."""

from __future__ import annotations

import json
import sys

import h5py
import pytest

from conftest import ROOT, mpirun_cmd, run_job

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "parle_hpc.train"]


def _check_run_dir(run_dir, n, epochs):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["type"] == "val"]
    syncs = [r for r in records if r["type"] == "sync"]
    assert [r["epoch"] for r in val] == list(range(1, epochs + 1))
    assert syncs and all(r["comm_s"] >= 0 and r["compute_s"] > 0 for r in syncs)
    assert {"gamma", "rho", "train_loss_std", "dist_to_ref", "wall_s"} <= syncs[-1].keys()
    # The wall-clock of a validation row covers every minibatch before it, logged or not.
    walls = [r["wall_s"] for r in val]
    assert walls == sorted(walls) and walls[0] > 0
    for row in val:
        before = [r for r in syncs if r["step"] <= row["step"]]
        if before and before[-1]["step"] < row["step"]:  # minibatches after the last logged sync
            assert row["wall_s"] > before[-1]["wall_s"]
        elif before:
            assert row["wall_s"] == pytest.approx(before[-1]["wall_s"])
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    with h5py.File(run_dir / "checkpoints" / latest, "r") as fh:
        assert fh.attrs["format"] == "parle-hpc-checkpoint"
        assert fh.attrs["n_replicas"] == n
        assert sorted(fh["replicas"].keys()) == [str(k) for k in range(n)]
        assert "features.0.0.weight" in fh["reference/params"]
        assert "features.0.1.running_mean" in fh["reference/buffers"]
        for k in range(n):
            assert fh[f"replicas/{k}/optimizer/anchor"].shape == fh["replicas/0/optimizer/anchor"].shape
    assert (run_dir / "error.png").stat().st_size > 10_000
    return val


def test_demo_config_under_mpirun_reaches_below_10_percent(tmp_path):
    out = tmp_path / "demo"
    res = run_job(mpirun_cmd(3) + TRAIN + ["--config", "configs/demo.yaml", f"out_dir={out}"],
                  timeout=600)
    assert res.returncode == 0, res.stdout[-4000:]
    val = _check_run_dir(out, 3, 3)
    assert val[-1]["val_error"] < 5.0  # issue 2 asks < 10%, the training-pipeline issue < 5%
    assert "reference val error" in res.stdout and "backend mpi" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 3 and summary["final_val_error"] == val[-1]["val_error"]


def test_local_launcher_runs_and_parle_plot_draws_two_runs(tmp_path):
    out = tmp_path / "nproc"
    res = run_job(TRAIN + ["--nproc", "2", "--config", "configs/demo.yaml", f"out_dir={out}",
                           "train.epochs=1", "name=nproc2", "train.eval_replicas=true",
                           "optim.grad_clip=5.0", "train.log_every=4"], timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "backend torch" in res.stdout
    val = _check_run_dir(out, 2, 1)
    assert len(val[-1]["replica_val_error"]) == 2
    sgd = tmp_path / "sgd"
    res = run_job(TRAIN + ["--config", "configs/demo.yaml", f"out_dir={sgd}", "optim.method=sgd",
                           "parle.L=null", "train.epochs=1", "name=sgd"], timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    png = tmp_path / "both.png"
    res = run_job([sys.executable, "-c", "from parle_hpc.cli import plot_main; plot_main()",
                   str(out), str(sgd), "--out", str(png)], timeout=120)
    assert res.returncode == 0 and png.stat().st_size > 10_000, res.stdout


def test_a_failing_rank_ends_the_job_with_a_clear_message(tmp_path):
    # Every rank fails at data loading; the job must end (not hang) and say why.
    res = run_job(mpirun_cmd(2) + TRAIN + ["--config", "configs/demo.yaml", f"out_dir={tmp_path}",
                                           "data.name=mnist", f"data.root={tmp_path}/none"],
                  timeout=120)
    assert res.returncode != 0
    assert "not found under" in res.stdout and "data.download=true" in res.stdout


def test_bad_override_exits_2_naming_the_key():
    res = run_job(TRAIN + ["--config", "configs/demo.yaml", "parle.gama0=0.1"], timeout=60)
    assert res.returncode == 2 and "parle.gama0" in res.stdout


def test_help_lists_launchers():
    res = run_job(TRAIN + ["--help"], timeout=60)
    assert res.returncode == 0 and "mpirun -np 3 parle-train" in res.stdout and "--nproc" in res.stdout


def test_horovod_backend_through_the_whole_cli(tmp_path):
    """Training, metrics, evaluation and the checkpoint gather over Horovod's collectives."""
    import importlib.util
    import os

    if importlib.util.find_spec("horovod") is None and os.environ.get("PARLE_REQUIRE_HOROVOD") != "1":
        pytest.skip("horovod not built (scripts/build_horovod.sh)")
    res = run_job(mpirun_cmd(2) + TRAIN + ["--config", "configs/demo.yaml", f"out_dir={tmp_path}",
                                           "dist.backend=horovod", "train.epochs=1",
                                           "parle.init=same"], timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "backend horovod" in res.stdout
    _check_run_dir(tmp_path, 2, 1)


def test_torchrun_launches_the_module(tmp_path):
    torchrun = str(__import__("pathlib").Path(sys.executable).with_name("torchrun"))
    res = run_job([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "parle_hpc.train",
                   "--config", "configs/demo.yaml", f"out_dir={tmp_path}", "train.epochs=1"],
                  timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "2 rank(s), backend torch" in res.stdout
    _check_run_dir(tmp_path, 2, 1)
