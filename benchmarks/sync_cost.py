"""Benchmark 2: time per Parle sync vs a bare allreduce and vs the reference implementation.

Runs :mod:`benchmarks.sync_worker` under ``mpirun -np 2`` and ``-np 3`` once per backend
(mpi4py, torch.distributed/gloo, Horovod on CPU), for buffers the size of LeNet and
WRN-16-4. Each job times its candidates interleaved; the ratios compare numbers from the
same job only. A Parle outer step makes two syncs, and the reference script two
``sync_with_master`` calls, so per-sync ratios are per-outer-step ratios as well.
"""

from __future__ import annotations

from typing import Any

from .common import PYTHON, Context, importable, mpirun_cmd, ratio, read_json, run_cmd

MODELS = ("lenet", "wrn-16-4")


def plan(ctx: Context) -> list[tuple[str, int]]:
    """(backend, ranks) jobs to run; Horovod only where it imports."""
    if ctx.quick:
        return [("mpi", 2), ("torch", 2)]
    backends = ["mpi", "torch"] + (["horovod"] if importable("horovod.torch") else [])
    return [(b, n) for n in (2, 3) for b in backends]


def run(ctx: Context) -> dict[str, Any]:
    ctx.log("[sync] Parle sync vs bare allreduce vs the reference's per-tensor Reduce+Bcast")
    models = ("lenet",) if ctx.quick else MODELS
    reps = 10 if ctx.quick else 60
    jobs: list[dict[str, Any]] = []
    skipped = []
    if not ctx.quick and not importable("horovod.torch"):
        skipped.append("horovod (not importable: build it with `make horovod`)")
    for backend, n in plan(ctx):
        out = ctx.out_dir / f"sync-{backend}-np{n}.json"
        cmd = mpirun_cmd(n) + [PYTHON, "-m", "benchmarks.sync_worker", "--backend", backend,
                               "--models", ",".join(models), "--reps", str(reps), "--out", out]
        run_cmd(cmd, timeout=120 if ctx.quick else 600, log=ctx.log)
        job = read_json(out)
        for r in job["results"]:
            t = {k: v["median"] for k, v in r["times"].items()}
            r["ratios"] = {"parle_over_bare": ratio(t["parle_sync"], t["bare_allreduce"]),
                           "step_over_bare": ratio(t["parle_step_sync"], t["bare_allreduce"])}
            if "reference_sync" in t:
                r["ratios"]["reference_over_parle"] = ratio(t["reference_sync"], t["parle_sync"])
            # comm.stats inside a real outer step: exactly two allreduces of P floats
            r["two_allreduces_of_P"] = r["parle_step_collectives"] == {"calls": 2, "bytes": 8 * r["P"]}
            ctx.log(f"  {backend:<8} np={n} {r['model']:<9} parle {t['parle_sync'] * 1e3:8.3f} ms"
                    f"  bare {t['bare_allreduce'] * 1e3:8.3f} ms"
                    + (f"  reference {t['reference_sync'] * 1e3:8.3f} ms" if "reference_sync" in t else "")
                    + f"  parle/bare {r['ratios']['parle_over_bare']:.2f}")
        jobs.append(job)
    mpi2 = next(j for j in jobs if j["backend"] == "mpi" and j["ranks"] == 2)
    head = mpi2["results"][-1]
    ctx.log(f"[sync] ratio reference sync / Parle sync (mpi, 2 ranks, {head['model']}): "
            f"{head['ratios']['reference_over_parle']:.2f}x; Parle sync / bare allreduce: "
            f"{head['ratios']['parle_over_bare']:.2f}x")
    return {"jobs": jobs, "skipped": skipped, "reps": reps,
            "ratio": head["ratios"]["reference_over_parle"],
            "ratio_name": f"reference sync / Parle sync (mpi, 2 ranks, {head['model']})",
            "parle_over_bare": head["ratios"]["parle_over_bare"]}
