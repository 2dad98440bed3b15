"""Helpers for the SLURM tests: start/stop the one-node test cluster, submit, wait, compare.

The cluster itself is scripts/slurm_cluster.sh (also usable by hand); this module drives it
and the SLURM client commands, each with a hard timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_job

CLUSTER_SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
            "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED"}
SBIN = "/usr/sbin:/sbin"


@dataclass
class Cluster:
    """A running test cluster: its directory and the environment its clients need."""

    dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, cmd: list[str], timeout: float = 60, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
        res = run_job(cmd, timeout=timeout, env={**self.env, **(env or {})})
        if check and res.returncode != 0:
            pytest.fail(f"{' '.join(map(str, cmd))} exited with {res.returncode}:\n"
                        f"{res.stdout[-3000:]}\n{self.daemon_logs()}")
        return res

    def daemon_logs(self, lines: int = 25) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            f = self.dir / "log" / name
            if f.exists():
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {lines} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    # ------------------------------------------------------------------ jobs
    def sbatch(self, script: str | Path, args: list[str] = (), sbatch_args: list[str] = (),
               env: dict | None = None) -> str:
        """Submit ``script args...`` from the repository root; return the job id."""
        res = self.run(["sbatch", "--parsable", f"--chdir={ROOT}", *sbatch_args, str(script),
                        *args], env=env)
        job_id = res.stdout.strip().splitlines()[-1].split(";")[0]
        assert job_id.isdigit(), res.stdout
        return job_id

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job -o`` as dicts (one per array task); [] when unknown."""
        res = self.run(["scontrol", "show", "job", "-o", job_id], check=False, timeout=30)
        if res.returncode != 0:
            return []
        return [_fields(line) for line in res.stdout.splitlines() if line.startswith("JobId=")]

    def job(self, job_id: str) -> dict[str, str]:
        found = self.jobs(job_id)
        return found[0] if found else {}

    def wait(self, job_id: str, timeout: float, log: Path | None = None,
             until=None) -> list[dict[str, str]]:
        """Poll until every task of ``job_id`` is in a terminal state (or ``until(jobs)``)."""
        deadline = time.monotonic() + timeout
        jobs: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            jobs = self.jobs(job_id)
            if jobs and (until(jobs) if until else
                         all(j.get("JobState") in TERMINAL for j in jobs)):
                return jobs
            time.sleep(1.0)
        self.run(["scancel", job_id], check=False)
        pytest.fail(f"job {job_id} not done within {timeout}s: "
                    f"{[(j.get('JobId'), j.get('JobState'), j.get('Reason')) for j in jobs]}\n"
                    f"{read_log(log)}\n{self.daemon_logs()}")

    def assert_completed(self, jobs: list[dict[str, str]], log_text: str) -> None:
        for j in jobs:
            if j.get("JobState") != "COMPLETED" or j.get("ExitCode") != "0:0":
                pytest.fail(f"job {j.get('JobId')}: {j.get('JobState')} exit {j.get('ExitCode')} "
                            f"({j.get('Reason')})\n{log_text[-6000:]}\n{self.daemon_logs()}")


def _fields(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value two`` -> dict (values may contain spaces: split on ' Key=')."""
    parts = re.split(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)", line.strip())
    return dict(p.split("=", 1) for p in parts if "=" in p)


def read_log(path: Path | None) -> str:
    if path is None or not Path(path).exists():
        return f"(no log at {path})"
    return Path(path).read_text(errors="replace")


# ---------------------------------------------------------------------- cluster lifetime
def start_cluster(directory: Path) -> Cluster:
    """Install (root + apt, if missing) and start munged, slurmctld and slurmd in ``directory``."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start munged/slurmctld/slurmd and need root")
    if shutil.which("bash") is None:
        pytest.skip("bash not found")
    env = {"PATH": f"{os.environ.get('PATH', '')}:{SBIN}"}
    res = run_job(["bash", str(CLUSTER_SCRIPT), "start", str(directory)], timeout=900, env=env)
    if res.returncode != 0:
        pytest.fail(f"could not start the test SLURM cluster:\n{res.stdout[-5000:]}")
    conf = directory / "slurm.conf"
    env["SLURM_CONF"] = str(conf)
    return Cluster(directory, env)


def stop_cluster(cluster: Cluster) -> None:
    run_job(["bash", str(CLUSTER_SCRIPT), "stop", str(cluster.dir)], timeout=180, env=cluster.env)


# ---------------------------------------------------------------------- results
def reference_params(checkpoint: Path) -> dict[str, np.ndarray]:
    """The reference weights (``/reference/params/*``) of a checkpoint, read with plain h5py."""
    with h5py.File(checkpoint, "r") as fh:
        group = fh["reference/params"]
        return {name: group[name][()] for name in group}


def final_checkpoint(run_dir: Path) -> Path:
    """The checkpoint ``checkpoints/latest`` names."""
    latest = run_dir / "checkpoints" / "latest"
    held = sorted(p.name for p in run_dir.rglob("*"))
    assert latest.exists(), f"no {latest}; the run directory holds {held}"
    path = latest.parent / latest.read_text().strip()
    assert path.exists(), f"latest names {path}, which does not exist"
    return path


def assert_same_reference(a: Path, b: Path) -> None:
    """Bit-for-bit equal reference weights."""
    ra, rb = reference_params(a), reference_params(b)
    assert sorted(ra) == sorted(rb), (sorted(ra), sorted(rb))
    diff = {k: float(np.abs(ra[k].astype(np.float64) - rb[k]).max()) for k in ra
            if not np.array_equal(ra[k], rb[k])}
    assert not diff, f"reference of {a} differs from {b}: max |diff| per tensor {diff}"


def syncs_logged(run_dir: Path) -> int:
    f = run_dir / "metrics.jsonl"
    if not f.exists():
        return 0
    return sum(1 for line in f.read_text().splitlines() if '"type": "sync"' in line
               or '"type":"sync"' in line)
