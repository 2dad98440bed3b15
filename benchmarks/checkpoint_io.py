"""Benchmark 5: checkpoint write and read of n replicas vs a raw sequential write (dd).

Runs :mod:`benchmarks.checkpoint_worker` under ``mpirun -np n`` (each rank one real
replica). The dd file has the checkpoint's size rounded up to a MiB and lies in the same
directory, on the same disk, as the checkpoint; both are fsynced.
"""

from __future__ import annotations

import shutil
from typing import Any

from .common import PYTHON, Context, mpirun_cmd, ratio, read_json, run_cmd


def plan(quick: bool) -> list[tuple[str, int]]:
    if quick:
        return [("lenet", 2)]
    return [(model, n) for model in ("lenet", "wrn-16-4") for n in (2, 3)]


def run(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001
    ctx.log("[checkpoint] save_checkpoint / read_checkpoint of n replicas vs dd (fsync)")
    rows = []
    scratch = ctx.scratch("checkpoint")
    try:
        for model, n in plan(ctx.quick):
            out = ctx.out_dir / f"checkpoint-{model}-np{n}.json"
            reps = 1 if ctx.quick else (5 if model == "lenet" else 3)
            cmd = mpirun_cmd(n) + [PYTHON, "-m", "benchmarks.checkpoint_worker", "--model", model,
                                   "--reps", str(reps), "--dir", scratch, "--out", out]
            run_cmd(cmd, timeout=120 if ctx.quick else 900, log=ctx.log)
            r = read_json(out)
            t = {k: v["median"] for k, v in r["times"].items()}
            r["ratios"] = {"write_gathered_over_dd": ratio(t["write_gathered"], t["dd_write"]),
                           "read_cold_over_dd_read": ratio(t["read_cold"], t["dd_read_cold"])}
            if "write_parallel" in t:
                r["ratios"]["write_parallel_over_dd"] = ratio(t["write_parallel"], t["dd_write"])
            r["dd_write_bytes_per_s"] = r["dd_mib"] * 2**20 / t["dd_write"]
            rows.append(r)
            ctx.log(f"  {model:<9} n={n} {r['file_bytes'] / 2**20:7.1f} MiB: write "
                    f"{t['write_gathered']:.3f}s gathered"
                    + (f", {t['write_parallel']:.3f}s parallel" if "write_parallel" in t else "")
                    + f", dd {t['dd_write']:.3f}s; read {t['read_cold']:.3f}s cold, "
                    f"{t['read_warm']:.3f}s warm, dd {t['dd_read_cold']:.3f}s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    head = rows[-1]
    key = "write_parallel_over_dd" if "write_parallel_over_dd" in head["ratios"] else "write_gathered_over_dd"
    ctx.log(f"[checkpoint] ratio checkpoint write / dd write ({head['model']}, n={head['replicas']}): "
            f"{head['ratios']['write_gathered_over_dd']:.1f}x gathered"
            + (f", {head['ratios']['write_parallel_over_dd']:.1f}x parallel HDF5"
               if "write_parallel_over_dd" in head["ratios"] else ""))
    return {"rows": rows, "ratio": head["ratios"][key],
            "ratio_name": f"checkpoint write ({'parallel' if 'parallel' in key else 'gathered'}) / "
                          f"dd write ({head['model']}, {head['replicas']} replicas)"}
