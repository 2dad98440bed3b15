"""Benchmark 3: wall-clock to a target validation error, LeNet on mnist5k.

Real ``parle-train`` runs (through :mod:`benchmarks.train_stats`, which also keeps each
rank's communicator counters for benchmark 4): SGD on one rank, Parle with n = 2 and 3,
data-parallel SGD (``optim.method=dp-sgd``) on the same ranks. Everything not compared is
held equal: model, data, lr 0.1 constant, Nesterov momentum 0.9, batch 128 per step (for
dp-sgd the *global* minibatch, 126 on 3 ranks so it splits evenly), the reference
evaluated after every epoch (``wall_s`` excludes evaluation), no checkpoints.

Parle uses ``L = 5`` (the demo's) rather than the paper's 25: an epoch of Parle is ``B * L``
minibatches per replica, and the reference is evaluated once per epoch, so with L = 25 the
time to a target could only be read to the nearest ~25 passes over the data.

The runs cannot share the machine at once, so they run one after the other, and the whole
set is repeated (A B C ... A B C ...) with the median taken per run: with fixed seeds every
repetition follows the same trajectory, only its wall-clock differs with the load.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import PYTHON, Context, mpirun_cmd, ratio, read_json, run_cmd, stats

TARGETS = (3.0, 2.0)  # validation error, %
PARLE_L = 5
REPS_FULL = 2
N_TRAIN = 4000        # mnist5k: 4,000 training digits


@dataclass(frozen=True, slots=True)
class Run:
    """One training run of the comparison."""

    name: str
    method: str
    ranks: int
    epochs: int
    batch_size: int = 128
    L: int = 0
    threads: int = 0  # 0: parle-train's default, the node's cores split over its ranks
    max_syncs: int = 0
    label: str = ""
    overrides: list[str] = field(default_factory=list)

    @property
    def batches_per_epoch(self) -> int:
        return N_TRAIN // self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_epoch * max(self.L, 1)

    def args(self, out_dir: Path) -> list[str]:
        args = [f"name={self.name}", f"out_dir={out_dir}", "model.name=lenet",
                "data.name=mnist5k", f"data.batch_size={self.batch_size}",
                f"optim.method={self.method}", "optim.lr=0.1", "optim.lr_schedule=null",
                f"parle.L={self.L if self.method == 'parle' else 'null'}",
                f"train.epochs={self.epochs}", "train.eval_every=1", "train.seed=0",
                f"train.threads={self.threads}", "train.progress=false",
                # one metrics line per epoch for every method: with dp-sgd every minibatch is
                # a sync, and the default (a line per sync) would add a metrics allreduce to
                # each of its minibatches that Parle pays once per L. It must divide the
                # syncs of the run: the loop adds to wall_s only at a logged sync.
                f"train.log_every={self.max_syncs or self.batches_per_epoch}",
                f"train.max_syncs={self.max_syncs}", "checkpoint.enabled=false"]
        return args + self.overrides


def plan(quick: bool) -> list[Run]:
    if quick:  # a few syncs each: the pipeline works, the numbers mean nothing
        return [Run("sgd", "sgd", 1, 1, max_syncs=6, label="SGD, 1 rank"),
                Run("parle-n2", "parle", 2, 1, L=PARLE_L, max_syncs=2, label="Parle n=2"),
                Run("dpsgd-n2", "dp-sgd", 2, 1, max_syncs=6, label="dp-SGD 2 ranks")]
    # Epochs: enough for each method to pass 2% in a first full run here (SGD and dp-SGD
    # near epoch 8-10, Parle at its 3rd); the 2-thread SGD is the slow one under load.
    return [Run("sgd", "sgd", 1, 8, label="SGD, 1 rank (2 threads, the default)"),
            Run("sgd-1thread", "sgd", 1, 12, threads=1, label="SGD, 1 rank, 1 thread"),
            Run("parle-n2", "parle", 2, 4, L=PARLE_L, label="Parle n=2"),
            Run("parle-n3", "parle", 3, 4, L=PARLE_L, label="Parle n=3"),
            Run("dpsgd-n2", "dp-sgd", 2, 12, label="dp-SGD 2 ranks"),
            Run("dpsgd-n3", "dp-sgd", 3, 12, batch_size=126, label="dp-SGD 3 ranks (batch 126)")]


def command(run: Run, run_dir: Path) -> list[str]:
    """The job: ``[mpirun -np N] python -m benchmarks.train_stats STATS -- ARGS``."""
    launch = mpirun_cmd(run.ranks) if run.ranks > 1 else []
    return launch + [PYTHON, "-m", "benchmarks.train_stats", run_dir / "comm-stats", "--",
                     *run.args(run_dir)]


def time_to(val: list[dict[str, Any]], target: float, key: str = "wall_s") -> float | None:
    """Training seconds at the first evaluation at or below ``target`` (None: not reached)."""
    return next((r[key] for r in val if r["val_error"] <= target), None)


def _one(ctx: Context, run: Run, run_dir: Path) -> dict[str, Any]:
    """One training job; what the benchmarks need of it."""
    from parle_hpc.train.metrics import read_metrics

    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = command(run, run_dir)
    run_cmd(cmd, timeout=300 if ctx.quick else 900, log=ctx.log)
    val = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "val"]
    summary = read_json(run_dir / "summary.json")
    comm_stats = [read_json(p) for p in sorted((run_dir / "comm-stats").glob("comm-stats-rank*.json"))]
    last = val[-1]
    ctx.log(f"  {run.name:<12} final val error {last['val_error']:.2f}% after "
            f"{last['wall_s']:.1f}s of training ({summary['elapsed_s']:.1f}s with evaluation)")
    return {"dir": run_dir, "command": " ".join(map(str, cmd)),
            "val": [{k: r[k] for k in ("epoch", "step", "wall_s", "elapsed_s", "val_error")}
                    for r in val],
            "summary": summary, "comm_stats": comm_stats,
            "epochs_done": summary["steps"] / run.steps_per_epoch}


def train_runs(ctx: Context) -> list[dict[str, Any]]:
    """Every training job of the plan, the whole plan repeated (interleaved): one entry per
    run with its repetitions under ``reps``."""
    runs = plan(ctx.quick)
    reps = 1 if ctx.quick else REPS_FULL
    out = [{"run": asdict(run), "reps": []} for run in runs]
    for k in range(reps):
        for entry, run in zip(out, runs):
            entry["reps"].append(_one(ctx, run, ctx.out_dir / "runs" / run.name / f"rep{k}"))
    return out


def _median(values: list[float | None]) -> float | None:
    """Median over repetitions; None when a repetition did not reach the target."""
    if not values or any(v is None for v in values):
        return None
    return stats([v for v in values if v is not None])["median"]


def ratios_from_table(table: list[dict[str, Any]]) -> dict[str, float]:
    """Baseline / Parle wall-clock to each target, for every pair that reached it:
    ``<baseline>_over_parle_n<n>_at_<target>`` with baseline dpsgd (same ranks), sgd (the
    default 2 threads) or sgd1 (one thread)."""
    by_name = {row["name"]: row for row in table}
    ratios: dict[str, float] = {}
    for target in TARGETS:
        key = f"time_to_{target:g}"
        for n in (2, 3):
            parle = by_name.get(f"parle-n{n}")
            for base, other in (("dpsgd", by_name.get(f"dpsgd-n{n}")), ("sgd", by_name.get("sgd")),
                                ("sgd1", by_name.get("sgd-1thread"))):
                if parle and other and parle[key] and other[key]:
                    ratios[f"{base}_over_parle_n{n}_at_{target:g}"] = ratio(other[key], parle[key])
    return ratios


def run(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001
    ctx.log("[time-to-accuracy] LeNet on mnist5k: SGD vs Parle vs data-parallel SGD")
    runs = train_runs(ctx)
    table = []
    for r in runs:
        reps = r["reps"]
        first = reps[0]
        row: dict[str, Any] = {
            "name": r["run"]["name"], "label": r["run"]["label"], "ranks": r["run"]["ranks"],
            "epochs": r["run"]["epochs"], "reps": len(reps),
            "final_val_error": first["val"][-1]["val_error"],
            "best_val_error": min(v["val_error"] for v in first["val"]),
            "same_trajectory": all([v["val_error"] for v in x["val"]]
                                   == [v["val_error"] for v in first["val"]] for x in reps)}
        for key in ("train_wall_s", "comm_s", "elapsed_s"):
            row[f"{key}_reps"] = [x["summary"][key] for x in reps]
            row[key] = _median(row[f"{key}_reps"])
        for target in TARGETS:
            per_rep = [time_to(x["val"], target) for x in reps]
            row[f"time_to_{target:g}_reps"] = per_rep
            row[f"time_to_{target:g}"] = _median(per_rep)
        table.append(row)
    ratios = ratios_from_table(table)
    for row in table:
        times = "  ".join(f"{t:g}%: " + (f"{row[f'time_to_{t:g}']:6.1f}s" if row[f"time_to_{t:g}"]
                                         is not None else "   n/r ") for t in TARGETS)
        ctx.log(f"  {row['label']:<38} {times}  best {row['best_val_error']:.2f}% "
                f"(median of {row['reps']})")
    head_key = f"dpsgd_over_parle_n2_at_{TARGETS[-1]:g}"
    head = ratios.get(head_key, math.nan)
    ctx.log(f"[time-to-accuracy] ratio dp-SGD / Parle wall-clock to {TARGETS[-1]:g}% (2 ranks): "
            + (f"{head:.2f}x" if head == head else "not reached by both"))
    return {"runs": runs, "table": table, "targets": list(TARGETS), "parle_L": PARLE_L,
            "reps": len(runs[0]["reps"]),
            "ratios": ratios, "ratio": head,
            "ratio_name": f"dp-SGD / Parle wall-clock to {TARGETS[-1]:g}% error (2 ranks)"}
