"""Shared helpers: launching real multi-rank jobs with a hard timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def mpirun_cmd(np_: int) -> list[str]:
    """``mpirun -np N`` with the flags this machine needs (root, few cores)."""
    exe = shutil.which("mpirun")
    if exe is None:
        pytest.fail("mpirun not found: install Open MPI (make test does it: apt-get install openmpi-bin)")
    cmd = [exe, "-np", str(np_), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def run_job(cmd: list[str], timeout: float = 300, env: dict | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a job, killing it at ``timeout`` (a hung collective fails the test, never the suite)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    # A test must not inherit the launcher variables of an outer job.
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")
