"""Benchmark 6: time to align one pair of networks (parle_hpc.analysis.overlap.align).

Per model (LeNet, All-CNN, WRN-16-4) two kinds of pair (see :mod:`benchmarks.overlap_worker`),
under two thread settings, each in its own process and the two alternated per repetition:

* ``default``: what a user gets, NumPy's BLAS and torch with a thread per core;
* ``1 thread``: ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``.

On a shared 2-core machine the second thread of a BLAS call often waits for a core another
user holds, so the two settings differ by far more than noise; measuring both side by side
says by how much. Trained networks lie between the two kinds of pair; the paper's Figure 1
(six networks) is 15 pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import PYTHON, Context, ratio, read_json, run_cmd, stats

MODELS = ("lenet", "allcnn", "wrn-16-4")
HEATMAP_PAIRS = 15  # six networks, as in the paper's Figure 1
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SETTINGS = {"default": None, "1 thread": "1"}


def _worker(models: tuple[str, ...], threads: str | None, out: Path) -> dict[str, Any]:
    """One worker process; ``threads`` None leaves the libraries their defaults."""
    cmd = [PYTHON, "-m", "benchmarks.overlap_worker", "--models", ",".join(models), "--out", out]
    if threads is None:
        run_cmd(cmd, timeout=600, unset=THREAD_VARS)
    else:
        run_cmd(cmd, timeout=600, env={k: threads for k in THREAD_VARS})
    return read_json(out)


def run(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001
    ctx.log("[overlap] permutation alignment time per pair (default threads vs 1 thread)")
    try:
        import parle_hpc.analysis.overlap  # noqa: F401
    except ImportError as exc:  # another change may still be landing it
        ctx.log(f"[overlap] skipped: parle_hpc.analysis.overlap is not importable ({exc})")
        return {"skipped": str(exc), "ratio": float("nan"), "ratio_name": "skipped"}
    models = ("lenet",) if ctx.quick else MODELS
    reps = 1 if ctx.quick else 3
    samples: dict[tuple[str, str, str], list[float]] = {}
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rep in range(reps):
        for setting, threads in SETTINGS.items():
            out = ctx.out_dir / f"overlap-{setting.replace(' ', '')}-rep{rep}.json"
            for row in _worker(models, threads, out)["rows"]:
                key = (setting, row["model"], row["pair"])
                samples.setdefault(key, []).append(row["seconds"])
                last[key] = row
    rows = []
    for (setting, model, pair), values in samples.items():
        row = dict(last[setting, model, pair], setting=setting, seconds=stats(values))
        row["heatmap_seconds"] = HEATMAP_PAIRS * row["seconds"]["median"]
        rows.append(row)
        ctx.log(f"  {model:<9} {pair:<11} {setting:<8} {row['seconds']['median']:7.3f}s  "
                f"{row['sweeps']:>3} sweeps  overlap {row['overlap']:.3f} "
                f"(unaligned {row['unaligned']:.3f})")
    by = {(r["setting"], r["model"], r["pair"]): r for r in rows}

    def median(setting: str, model: str, pair: str = "independent") -> float:
        return by[setting, model, pair]["seconds"]["median"]

    threads_ratio = {m: ratio(median("default", m), median("1 thread", m)) for m in models}
    ctx.log("  default threads / 1 thread, independent pairs: "
            + ", ".join(f"{m} {v:.1f}x" for m, v in threads_ratio.items()))
    if "wrn-16-4" in models:
        head = ratio(median("1 thread", "wrn-16-4"), median("1 thread", "lenet"))
        p_ratio = by["1 thread", "wrn-16-4", "independent"]["P"] / by["1 thread", "lenet", "independent"]["P"]
        ctx.log(f"[overlap] ratio WRN-16-4 / LeNet time per independent pair (1 thread): {head:.1f}x "
                f"(parameters {p_ratio:.1f}x)")
        name = "WRN-16-4 / LeNet alignment time per independent pair (1 thread)"
    else:
        head = threads_ratio["lenet"]
        ctx.log(f"[overlap] ratio LeNet alignment, default threads / 1 thread: {head:.1f}x")
        name = "LeNet alignment time, default threads / 1 thread"
    return {"rows": rows, "reps": reps, "threads_ratio": threads_ratio, "ratio": head,
            "ratio_name": name}
