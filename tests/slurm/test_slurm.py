"""The sbatch templates in slurm/ on a real SLURM: munged, slurmctld and slurmd started here.

A session fixture starts a one-node cluster on this machine (scripts/slurm_cluster.sh: it
installs the Debian packages when missing, runs everything from a temporary directory, and
stops what it started at the end). Each template is submitted unchanged with sbatch, with
three ranks on the CPU (4 stand-in GPUs let the GPU templates be scheduled as written) and a
tiny run of configs/demo.yaml; the job must end COMPLETED with its outputs, and the reference
of its final checkpoint must equal, bit for bit, that of the same run started directly with
``mpirun -np 3`` over the same backend. The preemption tests signal a running job, see it
checkpoint, exit 75, requeue itself and finish with the result of an uninterrupted run.
Every wait has a hard timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import mpirun_cmd, run_job
from slurmlib import (Cluster, assert_same_reference, final_checkpoint, read_log,
                      reference_params, start_cluster, stop_cluster, syncs_logged)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

NP = 3
# 20 syncs of L=5 minibatches (a bit under an epoch of the demo): ~10 s of training here.
TINY = ["train.epochs=1", "train.max_syncs=20", "train.device=cpu", "train.progress=false"]
# Three ranks on the test node, one core each; --gpus-per-node keeps GPU templates schedulable.
RESOURCES = [f"--ntasks-per-node={NP}", f"--gpus-per-node={NP}", "--cpus-per-task=1"]
JOB_TIMEOUT = 420


@pytest.fixture(scope="session")
def cluster():
    directory = Path(tempfile.mkdtemp(prefix="parle-slurm-"))  # short: munge socket path limit
    started = None
    try:
        started = start_cluster(directory)
        yield started
    finally:
        if started is not None:
            stop_cluster(started)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def venv_env() -> dict[str, str]:
    """What the templates need to find this interpreter's parle-train."""
    venv = Path(sys.prefix)
    return {"VENV": str(venv) if (venv / "bin" / "activate").exists() else ""}


@pytest.fixture(scope="session")
def direct_runs(tmp_path_factory):
    """The uninterrupted reference run per backend, started with mpirun outside SLURM (cached)."""
    cache: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("direct")

    def get(backend: str) -> Path:
        if backend not in cache:
            out = base / backend
            cmd = [*outside_slurm(), *mpirun_cmd(NP), sys.executable, "-m", "parle_hpc.train",
                   "--config", "configs/demo.yaml", *TINY, "train.threads=1",
                   f"dist.backend={backend}", f"out_dir={out}"]
            res = run_job(cmd, timeout=JOB_TIMEOUT)
            assert res.returncode == 0, f"direct mpirun run failed:\n{res.stdout[-4000:]}"
            cache[backend] = final_checkpoint(out)
        return cache[backend]

    return get


def outside_slurm() -> list[str]:
    """A command prefix that drops SLURM_* variables (should pytest itself run in a job)."""
    drop = [k for k in os.environ if k.startswith("SLURM_") and k != "SLURM_CONF"]
    return ["env", *[arg for k in drop for arg in ("-u", k)]]


def horovod_or_skip() -> None:
    if importlib.util.find_spec("horovod") is None:
        if os.environ.get("PARLE_REQUIRE_HOROVOD") == "1":
            pytest.fail("PARLE_REQUIRE_HOROVOD=1 but horovod is not importable")
        pytest.skip("horovod not built (scripts/build_horovod.sh)")


def backend_used(log_text: str) -> str:
    m = re.search(r"parle_hpc: \d+ rank\(s\), backend (\w+)", log_text)
    assert m, f"no backend line in the job log:\n{log_text[-3000:]}"
    return m.group(1)


def assert_outputs(run_dir: Path) -> Path:
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "error.png"):
        assert (run_dir / name).is_file(), f"{run_dir / name} missing"
    from parle_hpc.checkpoint import validate_checkpoint

    ckpt = final_checkpoint(run_dir)
    assert validate_checkpoint(ckpt) is None, validate_checkpoint(ckpt)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["replicas"] == NP and summary["syncs"] == 20, summary
    return ckpt


def run_template(cluster: Cluster, tmp_path: Path, template: str, env: dict[str, str],
                 sbatch_args: list[str] = (), args: list[str] = ()) -> tuple[Path, str]:
    """Submit a template, wait, check COMPLETED; return (run dir, job log)."""
    run_dir = tmp_path / "run"
    log = tmp_path / "job.out"
    job_id = cluster.sbatch(f"slurm/{template}", [*TINY, *args],
                            [*RESOURCES, f"--output={log}", *sbatch_args],
                            env={"RUN_DIR": str(run_dir), **env})
    jobs = cluster.wait(job_id, JOB_TIMEOUT, log)
    text = read_log(log)
    cluster.assert_completed(jobs, text)
    return run_dir, text


# ---------------------------------------------------------------------- the cluster
def test_cluster_runs_three_ranks(cluster):
    res = cluster.run(["srun", f"-n{NP}", "bash", "-c", "echo rank $SLURM_PROCID of $SLURM_NTASKS"])
    assert sorted(line for line in res.stdout.splitlines() if line.startswith("rank")) == \
        [f"rank {r} of {NP}" for r in range(NP)]


# ---------------------------------------------------------------------- discovery
# One write per rank (ranks share the output pipe; unbuffered print writes each piece apart).
PROBE = ("import json, os, sys; from parle_hpc.comm import discover; e = discover(); "
         "sys.stdout.write('DISCOVER ' + json.dumps([e.rank, e.size, e.local_rank, e.local_size, "
         "e.launcher, os.environ.get('CUDA_VISIBLE_DEVICES')]) + chr(10)); sys.stdout.flush()")


def _probe(res) -> list[list]:
    assert res.returncode == 0, res.stdout[-3000:]
    rows = [json.loads(m) for m in re.findall(r"DISCOVER (\[[^\]]*\])", res.stdout)]
    assert len(rows) == NP, res.stdout[-3000:]
    return sorted(rows)


def test_discovery_under_srun_matches_mpirun_and_torchrun(cluster, tmp_path):
    """Rank, size, local rank and local size from SLURM_* equal what mpirun and torchrun give."""
    py = [sys.executable, "-c", PROBE]
    seen = {
        "srun": _probe(cluster.run(["srun", f"-n{NP}", "--mpi=none", f"--gpus-per-node={NP}", *py],
                                   check=False, timeout=120)),
        "srun --mpi=pmix": _probe(cluster.run(["srun", f"-n{NP}", "--mpi=pmix", *py],
                                              check=False, timeout=120)),
        "mpirun in an allocation": _probe(cluster.run(["salloc", f"-n{NP}", *mpirun_cmd(NP), *py],
                                                      check=False, timeout=120)),
        "mpirun": _probe(run_job(outside_slurm() + mpirun_cmd(NP) + py, timeout=120)),
    }
    script = tmp_path / "probe.py"
    script.write_text(PROBE + "\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    if torchrun.exists():
        cmd = [*outside_slurm(), str(torchrun), f"--nproc_per_node={NP}", str(script)]
        seen["torchrun"] = _probe(run_job(cmd, timeout=180))
    expected = [[r, NP, r, NP] for r in range(NP)]
    for how, rows in seen.items():
        assert [row[:4] for row in rows] == expected, (how, rows)
    assert {row[4] for row in seen["srun"]} == {"slurm"}
    assert {row[4] for row in seen["mpirun in an allocation"]} == {"mpi"}
    # --gpus-per-node: every rank sees all the node's GPUs and takes the one of its local rank
    assert {row[5] for row in seen["srun"]} == {",".join(map(str, range(NP)))}


# ---------------------------------------------------------------------- templates
def test_cpu_template(cluster, venv_env, direct_runs, tmp_path):
    """cpu.sbatch: mpirun inside the allocation, mpi4py backend."""
    run_dir, log = run_template(cluster, tmp_path, "cpu.sbatch", venv_env,
                                sbatch_args=[f"--ntasks={NP}"])
    assert "launcher mpirun" in log
    backend = backend_used(log)
    assert backend == "mpi"
    assert_same_reference(assert_outputs(run_dir), direct_runs(backend))


@pytest.mark.parametrize("backend", ["auto", "horovod"])
def test_single_node_template(cluster, venv_env, direct_runs, tmp_path, backend):
    """single_node.sbatch: srun --mpi=pmix; auto = torch.distributed, or Horovod over MPI."""
    if backend == "horovod":
        horovod_or_skip()
    run_dir, log = run_template(cluster, tmp_path, "single_node.sbatch",
                                {**venv_env, "BACKEND": backend})
    assert "launcher srun --mpi=pmix" in log
    used = backend_used(log)
    assert used == ("torch" if backend == "auto" else backend)
    assert_same_reference(assert_outputs(run_dir), direct_runs(used))


def test_multi_node_template(cluster, venv_env, direct_runs, tmp_path):
    """multi_node.sbatch (on the one test node): srun --mpi=pmix with the mpi4py backend."""
    run_dir, log = run_template(cluster, tmp_path, "multi_node.sbatch",
                                {**venv_env, "BACKEND": "mpi"}, sbatch_args=["--nodes=1"])
    assert "launcher srun --mpi=pmix" in log
    assert backend_used(log) == "mpi"
    assert_same_reference(assert_outputs(run_dir), direct_runs("mpi"))


def test_array_sweep_template(cluster, venv_env, direct_runs, tmp_path):
    """array_sweep.sbatch: two seeds, two array tasks, one run directory each."""
    sweep = tmp_path / "sweep"
    log = tmp_path / "sweep-%a.out"
    job_id = cluster.sbatch("slurm/array_sweep.sbatch", TINY,
                            [*RESOURCES, "--array=0-1", f"--output={log}"],
                            env={**venv_env, "SEEDS": "0 1", "SWEEP_DIR": str(sweep)})
    jobs = cluster.wait(job_id, 2 * JOB_TIMEOUT)
    logs = "\n".join(read_log(tmp_path / f"sweep-{i}.out") for i in range(2))
    assert len(jobs) == 2, jobs
    cluster.assert_completed(jobs, logs)
    runs = sorted(p.name for p in sweep.iterdir())
    assert runs == ["demo-seed0", "demo-seed1"], runs
    seed0 = assert_outputs(sweep / "demo-seed0")
    seed1 = assert_outputs(sweep / "demo-seed1")
    backend = backend_used(read_log(tmp_path / "sweep-0.out"))
    assert_same_reference(seed0, direct_runs(backend))
    ref0, ref1 = reference_params(seed0), reference_params(seed1)
    assert any((ref0[k] != ref1[k]).any() for k in ref0), "seeds 0 and 1 gave the same reference"


def test_array_sweep_rejects_a_task_beyond_the_pairs(tmp_path):
    """A task id past CONFIGS x SEEDS stops at once with the --array range to use."""
    res = run_job(["bash", "slurm/array_sweep.sbatch"], timeout=60,
                  env={"SLURM_ARRAY_TASK_ID": "5", "SEEDS": "0 1", "VENV": str(Path(sys.prefix))})
    assert res.returncode == 2
    assert "--array=0-1" in res.stdout


# ---------------------------------------------------------------------- preemption
@pytest.mark.parametrize("launcher,how", [("srun", "--batch"), ("mpirun", "--full")])
def test_preemptible_template_checkpoints_requeues_and_resumes(cluster, venv_env, direct_runs,
                                                               tmp_path, launcher, how):
    """USR2 to a running job: checkpoint, exit 75, scontrol requeue, --resume auto, same result.

    ``--batch`` signals only the batch shell (as --signal=B:USR2@N does), which must forward it
    to the ranks; ``--full`` signals every process of the job as well.
    """
    run_dir = tmp_path / "run"
    log = tmp_path / "job.out"
    job_id = cluster.sbatch("slurm/preemptible.sbatch", TINY,
                            [*RESOURCES, f"--output={log}", "--time=30"],
                            env={**venv_env, "RUN_DIR": str(run_dir), "LAUNCHER": launcher})
    # let it train a little: at least two syncs logged
    cluster.wait(job_id, JOB_TIMEOUT, log,
                 until=lambda jobs: syncs_logged(run_dir) >= 2
                 or jobs[0].get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"))
    assert cluster.job(job_id).get("JobState") == "RUNNING", read_log(log)
    cluster.run(["scancel", "--signal=USR2", how, job_id])

    # It checkpoints, exits 75 and requeues itself. SLURM holds a requeued job for about two
    # minutes (BeginTime); we release it after a few seconds (StartTime=now). Not at once:
    # slurmd refuses a job credential created in the second it revoked the old one ("Job
    # credential revoked"), and the restarted job would fail.
    pending_since: list[float] = []

    def requeued(jobs):
        job = jobs[0]
        if int(job.get("Restarts", 0)) >= 1 and job.get("JobState") == "PENDING" \
                and job.get("Reason") == "BeginTime":
            pending_since.append(time.monotonic())
            if pending_since[-1] - pending_since[0] >= 5:
                cluster.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                            check=False)
        return int(job.get("Restarts", 0)) >= 1 or job.get("JobState") in ("COMPLETED", "FAILED")

    cluster.wait(job_id, JOB_TIMEOUT, log, until=requeued)
    jobs = cluster.wait(job_id, JOB_TIMEOUT, log, until=lambda jobs: requeued(jobs) and
                        jobs[0].get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))
    text = read_log(log)
    cluster.assert_completed(jobs, text)
    assert jobs[0].get("Restarts") == "1", jobs[0]

    stop = re.search(r"parle-train: SIGUSR2: checkpoint (\S+) written; exiting with 75", text)
    assert stop, f"no checkpoint-on-signal line in the log:\n{text[-5000:]}"
    assert "requeueing job" in text and "(restart 1)" in text, text[-5000:]
    stopped_at = Path(stop.group(1))
    assert stopped_at.exists(), f"the checkpoint written on the signal is gone: {stopped_at}"
    assert f"resumed from {stopped_at}" in text, text[-5000:]
    final = assert_outputs(run_dir)
    assert final != stopped_at, "the run did not continue after the resume"
    # the template's second line of defence: a wall-time budget from the job's time limit
    budget = yaml.safe_load((run_dir / "config.yaml").read_text())["checkpoint"]["walltime_s"]
    assert 0 < budget <= 30 * 60, budget
    assert_same_reference(final, direct_runs(backend_used(text)))


def test_preemptible_template_stays_cancelled_on_scancel(cluster, venv_env, tmp_path):
    """A plain scancel (SIGTERM) is not a request to requeue: the job ends CANCELLED for good.

    SLURM would accept ``scontrol requeue`` from a job that is being cancelled; the template
    must not issue it after SIGTERM (the ranks may still checkpoint).
    """
    run_dir = tmp_path / "run"
    log = tmp_path / "job.out"
    job_id = cluster.sbatch("slurm/preemptible.sbatch", TINY,
                            [*RESOURCES, f"--output={log}", "--time=30"],
                            env={**venv_env, "RUN_DIR": str(run_dir)})
    cluster.wait(job_id, JOB_TIMEOUT, log,
                 until=lambda jobs: syncs_logged(run_dir) >= 2
                 or jobs[0].get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"))
    assert cluster.job(job_id).get("JobState") == "RUNNING", read_log(log)
    cluster.run(["scancel", job_id])
    cluster.wait(job_id, JOB_TIMEOUT, log, until=lambda jobs: "not requeueing" in read_log(log)
                 or jobs[0].get("JobState") == "PENDING")
    time.sleep(5)  # a requeue, had there been one, shows by now
    job = cluster.job(job_id)
    assert job.get("JobState") == "CANCELLED" and job.get("Restarts") == "0", \
        (job.get("JobState"), job.get("Restarts"), read_log(log))
    assert "requeueing job" not in read_log(log)
