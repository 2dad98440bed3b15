"""Shared pieces of the benchmarks: run settings, timing, machine facts, subprocesses, JSON.

Timing rule for every benchmark: the things compared are timed *side by side in one
process*, their repetitions interleaved (A B C A B C ...), and medians reported. Absolute
times on a shared 2-core machine are noise; ratios measured this way are not.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass(frozen=True, slots=True)
class Context:
    """Where a benchmark writes and how much work it does (``quick`` is the CI smoke mode)."""

    quick: bool
    out_dir: Path
    """``benchmarks/results/<mode>``: JSON results, run directories, scratch files."""
    log: Callable[[str], None] = field(default=print)

    def scratch(self, name: str) -> Path:
        """A fresh directory under ``out_dir`` (on the same disk as the results)."""
        path = self.out_dir / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


# ---------------------------------------------------------------------- timing
def interleaved(candidates: Mapping[str, Callable[[], object]], reps: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call, the candidates' repetitions interleaved (A B A B ...), so a
    burst of load from other users hits all of them alike. ``warmup`` rounds are dropped.

    A candidate that returns a ``float`` has timed itself (it had untimed set-up to do, or a
    collective to bracket with barriers); otherwise the whole call is timed.
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for rep in range(warmup + reps):
        for name, fn in candidates.items():
            start = time.perf_counter()
            own = fn()
            elapsed = own if isinstance(own, float) else time.perf_counter() - start
            if rep >= warmup:
                samples[name].append(elapsed)
    return samples


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median with the quartiles (the spread says how noisy the machine was) and n."""
    xs = sorted(samples)
    if not xs:
        return {"median": float("nan"), "p25": float("nan"), "p75": float("nan"), "n": 0}
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "p25": q[0], "p75": q[2], "min": xs[0], "n": len(xs)}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# ---------------------------------------------------------------------- the machine
def machine_info() -> dict[str, Any]:
    """What the report must state about the machine the numbers come from."""
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    import torch

    info: dict[str, Any] = {
        "nproc": os.cpu_count() if not hasattr(os, "sched_getaffinity") else len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "cuda": torch.cuda.is_available(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        from mpi4py import MPI

        info["mpi"] = MPI.Get_library_version().splitlines()[0].strip().rstrip("\x00")
    except Exception:  # noqa: BLE001 - informative only
        info["mpi"] = None
    return info


# ---------------------------------------------------------------------- subprocesses
def mpirun_cmd(n: int) -> list[str]:
    """``mpirun -np N`` with the flags this machine needs (root; more ranks than cores)."""
    exe = shutil.which("mpirun")
    if exe is None:
        raise RuntimeError("mpirun not found: install Open MPI (make setup does it as root)")
    cmd = [exe, "-np", str(n), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def run_cmd(cmd: Sequence[str], timeout: float, log: Callable[[str], None] | None = None,
            env: Mapping[str, str] | None = None, unset: Sequence[str] = ()) -> str:
    """Run ``cmd`` to the end and return its output; kill its whole process group at
    ``timeout`` (a hung collective must not hang the benchmark) and raise on failure.
    ``env`` adds to this process's environment, ``unset`` removes variables from it."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    # A benchmark's job must not inherit the launcher variables of an outer job.
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", *unset):
        full_env.pop(key, None)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p)
    if log:
        log("  $ " + " ".join(map(str, cmd)))
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f}s: {' '.join(map(str, cmd))}\n{out[-3000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode}: {' '.join(map(str, cmd))}\n{out[-3000:]}")
    return out


def importable(module: str) -> bool:
    """Whether ``module`` imports in a fresh interpreter (Horovod can be installed yet
    unusable, e.g. built for another torch)."""
    res = subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True, timeout=120)
    return res.returncode == 0


# ---------------------------------------------------------------------- JSON
def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
