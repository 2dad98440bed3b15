"""Checkpoints under real faults: signals, killed ranks, divergence, corruption, full disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, mpirun_cmd, run_job
from parle_hpc.checkpoint import latest_valid_checkpoint, validate_checkpoint

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "parle_hpc.train"]
# Two epochs of 62 minibatches per replica (L = 2): 31 syncs an epoch.
RUN = ["--config", "configs/demo.yaml", "train.epochs=2", "parle.L=2"]
FINAL = "ckpt-step000000124.h5"


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=dict(env, PYTHONUNBUFFERED="1"), start_new_session=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _syncs_logged(run_dir: Path) -> int:
    f = run_dir / "metrics.jsonl"
    return sum(1 for line in f.read_text().splitlines() if '"sync"' in line) if f.exists() else 0


def _finish(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"job did not end within {timeout}s")


def _rank_pids(mpirun_pid: int) -> dict[int, int]:
    """OMPI rank -> pid of the processes mpirun started."""
    out = {}
    for child in subprocess.run(["pgrep", "-P", str(mpirun_pid)], capture_output=True,
                                text=True).stdout.split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(item.split(b"=")[1])] = int(child)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    res = run_job(mpirun_cmd(2) + TRAIN + RUN + [f"out_dir={out}"], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    return out / "checkpoints" / FINAL


def _assert_same_run(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for group in ("reference/params", "reference/buffers", "replicas/0/params",
                      "replicas/1/optimizer"):
            for name, ds in fa[group].items():
                if isinstance(ds, h5py.Dataset):
                    assert np.array_equal(ds[()], fb[group][name][()]), f"{group}/{name} differs"


def test_sigusr2_checkpoints_exits_75_and_resume_is_bit_for_bit(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = _start(mpirun_cmd(2) + TRAIN + RUN + [f"out_dir={out}"], tmp_path / "first.log")
    _wait_for(lambda: _syncs_logged(out) >= 40, 240, "40 syncs")
    os.kill(proc.pid, signal.SIGUSR2)  # mpirun forwards SIGUSR2 to every rank
    assert _finish(proc, 120) == 75
    log = (tmp_path / "first.log").read_text()
    assert "SIGUSR2: checkpoint" in log and "exiting with 75" in log
    stopped_at = latest_valid_checkpoint(out / "checkpoints")
    assert stopped_at is not None and stopped_at.name != FINAL
    res = run_job(mpirun_cmd(2) + TRAIN + RUN + [f"out_dir={out}", "--resume", "auto"], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"resumed from {stopped_at}" in res.stdout
    _assert_same_run(uninterrupted, out / "checkpoints" / FINAL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["type"] == "sync"]
    assert steps == sorted(set(steps)) and len(steps) == 62  # no duplicated or lost syncs


def test_walltime_budget_with_local_launcher_then_resume(tmp_path, uninterrupted):
    out = tmp_path / "run"
    res = run_job(TRAIN + ["--nproc", "2"] + RUN + [f"out_dir={out}", "checkpoint.walltime_s=2",
                                                     "checkpoint.walltime_margin_s=0"], timeout=300)
    assert res.returncode == 75, res.stdout[-3000:]
    assert "wall-time budget" in res.stdout
    res = run_job(TRAIN + ["--nproc", "2"] + RUN + [f"out_dir={out}", "--resume", "auto"], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    _assert_same_run(uninterrupted, out / "checkpoints" / FINAL)


def test_killed_rank_ends_the_job_within_60s_and_checkpoint_survives(tmp_path):
    out = tmp_path / "run"
    proc = _start(mpirun_cmd(2) + TRAIN + ["--config", "configs/demo.yaml", "train.epochs=3",
                                           "parle.L=2", f"out_dir={out}"], tmp_path / "log")
    _wait_for(lambda: (out / "checkpoints" / "latest").exists(), 240, "the first checkpoint")
    pids = _rank_pids(proc.pid)
    assert set(pids) == {0, 1}
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    code = _finish(proc, 90)
    assert time.monotonic() - killed < 60
    assert code != 0
    log = (tmp_path / "log").read_text()
    assert "rank 1" in log and ("signal 9" in log or "Killed" in log), log[-2000:]
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert validate_checkpoint(latest) is None
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_killed_rank_with_local_launcher_names_it(tmp_path):
    out = tmp_path / "run"
    proc = _start(TRAIN + ["--nproc", "2", "--config", "configs/demo.yaml", "train.epochs=3",
                           "parle.L=2", f"out_dir={out}"], tmp_path / "log")
    _wait_for(lambda: (out / "checkpoints" / "latest").exists(), 240, "the first checkpoint")
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    rank1 = [c for c in children if b"RANK=1" in Path(f"/proc/{c}/environ").read_bytes().split(b"\0")]
    os.kill(int(rank1[0]), signal.SIGKILL)
    killed = time.monotonic()
    assert _finish(proc, 90) != 0 and time.monotonic() - killed < 60
    assert "rank 1 was killed by signal 9 (SIGKILL)" in (tmp_path / "log").read_text()


def test_divergence_stops_naming_replica_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    res = run_job(mpirun_cmd(2) + TRAIN + ["--config", "configs/demo.yaml", "train.epochs=3",
                                           "parle.L=2", f"out_dir={out}",
                                           "optim.lr_schedule=[[1,0.1],[3,1.0e+12]]"], timeout=300)
    assert res.returncode == 3, res.stdout[-3000:]
    assert "hold NaN/Inf weights at step" in res.stdout and "replica(s) 0" in res.stdout
    files = sorted((out / "checkpoints").glob("ckpt-*.h5"))
    assert [f.name for f in files] == ["ckpt-step000000062.h5"]
    assert validate_checkpoint(files[0]) is None


def _two_checkpoints(tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "run"
    res = run_job(TRAIN + ["--config", "configs/demo.yaml", "train.epochs=2", "parle.L=1",
                           f"out_dir={out}"], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    older, newer = sorted((out / "checkpoints").glob("ckpt-*.h5"))
    return older, newer


def test_bit_flip_and_truncation_are_detected_and_skipped(tmp_path, caplog):
    older, newer = _two_checkpoints(tmp_path)
    with h5py.File(newer, "r") as fh:
        offset = fh["replicas/0/optimizer/anchor"].id.get_chunk_info(0).byte_offset
    data = bytearray(newer.read_bytes())
    data[offset + 100] ^= 0x10
    newer.write_bytes(bytes(data))
    assert validate_checkpoint(newer) is not None
    assert latest_valid_checkpoint(newer.parent) == older
    assert "skipping checkpoint" in caplog.text
    res = run_job(TRAIN + ["--config", "configs/demo.yaml", "train.epochs=2", "parle.L=1",
                           f"out_dir={older.parent.parent}", "--resume", "auto"], timeout=300)
    assert res.returncode == 0 and f"resumed from {older}" in res.stdout, res.stdout[-3000:]
    with open(older, "r+b") as fh:  # truncation
        fh.truncate(older.stat().st_size // 2)
    assert "unreadable" in validate_checkpoint(older)
    res = run_job([sys.executable, "-m", "parle_hpc.checkpoint.cli", "inspect", str(older)], timeout=60)
    assert res.returncode == 1 and "valid:      NO" in res.stdout


def test_full_disk_keeps_previous_checkpoints(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    # room for metrics and one checkpoint (about 3.6 MB for one LeNet replica), not two
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        res = run_job(TRAIN + ["--config", "configs/demo.yaml", "train.epochs=2", "parle.L=1",
                               f"out_dir={mnt}/run"], timeout=300)
        assert res.returncode == 0, res.stdout[-3000:]
        assert "No space left on device" in res.stdout and "earlier checkpoints are intact" in res.stdout
        files = sorted((mnt / "run" / "checkpoints").glob("*.h5"))
        assert [f.name for f in files] == ["ckpt-step000000031.h5"]
        assert validate_checkpoint(files[0]) is None
        assert not list((mnt / "run" / "checkpoints").glob(".*tmp*"))
    finally:
        subprocess.run(["umount", str(mnt)])


def test_world_size_mismatch_is_a_clear_error(tmp_path, uninterrupted):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / FINAL).write_bytes(uninterrupted.read_bytes())
    res = run_job(TRAIN + RUN + [f"out_dir={out}", "--resume", "auto"], timeout=120)
    assert res.returncode == 1
    assert "holds 2 replicas but this job has 1 ranks" in res.stdout


def test_parallel_hdf5_writes_the_same_file_contents(tmp_path, uninterrupted):
    if not h5py.get_config().mpi:
        if os.environ.get("PARLE_REQUIRE_H5PY_MPI") == "1":
            pytest.fail("PARLE_REQUIRE_H5PY_MPI=1 but h5py has no MPI support")
        pytest.skip("h5py without MPI (scripts/build_h5py_mpi.sh)")
    for mode in ("true", "false"):
        out = tmp_path / mode
        res = run_job(mpirun_cmd(2) + TRAIN + RUN + [f"out_dir={out}", f"checkpoint.parallel={mode}"],
                      timeout=300)
        assert res.returncode == 0, res.stdout[-3000:]
        assert validate_checkpoint(out / "checkpoints" / FINAL) is None
    _assert_same_run(tmp_path / "true" / "checkpoints" / FINAL, tmp_path / "false" / "checkpoints" / FINAL)
    _assert_same_run(uninterrupted, tmp_path / "true" / "checkpoints" / FINAL)


def test_parle_ckpt_inspect_and_export(tmp_path, uninterrupted):
    import torch

    from parle_hpc.models import build

    res = run_job([sys.executable, "-m", "parle_hpc.checkpoint.cli", "inspect", str(uninterrupted)],
                  timeout=60)
    assert res.returncode == 0 and "valid:      yes" in res.stdout and "replicas:   2" in res.stdout
    for suffix in (".pt", ".safetensors"):
        target = tmp_path / f"model{suffix}"
        res = run_job([sys.executable, "-m", "parle_hpc.checkpoint.cli", "export", str(uninterrupted),
                       "--replica", "reference", "--out", str(target)], timeout=60)
        assert res.returncode == 0, res.stdout
        if suffix == ".pt":
            state = torch.load(target, weights_only=True)
        else:
            from safetensors.torch import load_file
            state = load_file(target)
        model = build("lenet")
        model.load_state_dict(state, strict=True)
        with h5py.File(uninterrupted, "r") as fh:
            w = fh["reference/params/classifier.5.weight"][()]
        assert np.array_equal(model.state_dict()["classifier.5.weight"].numpy(), w)
