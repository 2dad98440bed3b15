"""Benchmark 4: bytes each rank communicates per epoch, Parle vs data-parallel SGD.

Measured, not computed: the numbers are the communicator's own counters (``comm.stats``:
calls and buffer bytes per collective) of every rank of the real training runs of
benchmark 3. The formula is printed next to them as a check:

* Parle: 2 allreduces of P floats per outer step, B outer steps per epoch -> ``2 * 4P * B``;
* dp-SGD: 1 allreduce of P floats per minibatch, B minibatches per epoch   -> ``4P * B``;

plus, in both, one collective of P floats at start-up (Parle's first reference, dp-SGD's
broadcast of rank 0's weights) and, at every evaluation, one allreduce of the BN running
statistics. "Bytes" are the bytes of the buffer each rank hands to the collective; what
goes over a wire depends on the algorithm (a ring allreduce sends ``2 (n-1)/n`` times the
buffer per rank; Open MPI's shared-memory collectives on one node copy through memory).
"""

from __future__ import annotations

from typing import Any

from .common import Context, ratio

BYTES = 4


def _model_sizes() -> tuple[int, int]:
    """(P, BN running-statistics floats) of LeNet."""
    from parle_hpc.models import build

    model = build("lenet")
    P = sum(p.numel() for p in model.parameters())
    bn = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return P, bn


def analyse(r: dict[str, Any], P: int, bn_floats: int) -> dict[str, Any]:
    run = r["run"]
    n, method, L = run["ranks"], run["method"], run["L"]
    B = r["run_batches_per_epoch"]
    epochs = r["epochs_done"]
    evals = len(r["val"])
    per_rank = []
    for s in r["comm_stats"]:
        per_rank.append({"rank": s["rank"], "calls": s["calls"], "bytes": s["bytes"],
                         "seconds": s["seconds"]})
    rank0 = per_rank[0]
    flat = rank0["bytes"].get("allreduce", 0)  # the P-float syncs (and BN averaging)
    steps, syncs = r["summary"]["steps"], r["summary"]["syncs"]
    if method == "parle":
        formula_epoch = 2 * BYTES * P * B
        predicted = (2 * syncs + 1) * BYTES * P + evals * BYTES * bn_floats
        examples_per_rank = steps * run["batch_size"]
    else:  # dp-sgd: the start-up collective is a broadcast, counted under its own name
        formula_epoch = BYTES * P * B
        predicted = steps * BYTES * P + evals * BYTES * bn_floats
        examples_per_rank = steps * run["batch_size"] // n
    small = rank0["bytes"].get("allreduce_sum", 0)
    return {
        "name": run["name"], "label": run["label"], "method": method, "ranks": n, "L": L,
        "epochs": epochs, "steps": steps, "syncs": syncs, "evaluations": evals,
        "measured_allreduce_bytes": flat, "predicted_allreduce_bytes": predicted,
        "measured_matches_prediction": flat == predicted,
        "measured_bytes_per_epoch": flat / epochs if epochs else float("nan"),
        "formula_bytes_per_epoch": formula_epoch,
        "bytes_per_1000_examples": 1000 * flat / examples_per_rank,
        "small_collectives_per_epoch": rank0["calls"].get("allreduce_sum", 0) / epochs if epochs else 0.0,
        "small_bytes": small,
        "broadcast_bytes": rank0["bytes"].get("broadcast", 0),
        "ring_wire_bytes_per_epoch": 2 * (n - 1) / n * flat / epochs if epochs else float("nan"),
        "comm_seconds": {k: v for k, v in rank0["seconds"].items()},
        "ranks_agree": all(p["bytes"] == rank0["bytes"] for p in per_rank),
    }


def run(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    ctx.log("[comm-volume] bytes per rank per epoch from comm.stats of the training runs")
    from . import time_to_accuracy

    tta = results.get("time_to_accuracy")
    runs = tta["runs"] if tta else time_to_accuracy.train_runs(ctx)
    P, bn = _model_sizes()
    rows = []
    for r in runs:
        if r["run"]["ranks"] < 2:
            continue
        # the counters of the first repetition (every repetition runs the same collectives)
        r = dict(r["reps"][0], run=r["run"],
                 run_batches_per_epoch=time_to_accuracy.N_TRAIN // r["run"]["batch_size"])
        row = analyse(r, P, bn)
        rows.append(row)
        ctx.log(f"  {row['label']:<28} {row['measured_bytes_per_epoch'] / 2**20:8.2f} MiB/epoch "
                f"measured, {row['formula_bytes_per_epoch'] / 2**20:8.2f} formula; "
                f"{row['bytes_per_1000_examples'] / 2**20:6.2f} MiB per 1000 examples; "
                f"counters {'=' if row['measured_matches_prediction'] else '!='} prediction")
    B = time_to_accuracy.N_TRAIN // 128
    ctx.log(f"  formula: Parle 2 x 4P x B = 2 x 4 x {P:,} x {B} = {2 * BYTES * P * B / 2**20:.2f} MiB"
            f" per epoch; dp-SGD 4P x B = {BYTES * P * B / 2**20:.2f} MiB per epoch")
    by = {row["name"]: row for row in rows}
    head = ratio(by["parle-n2"]["measured_bytes_per_epoch"], by["dpsgd-n2"]["measured_bytes_per_epoch"]) \
        if "parle-n2" in by and "dpsgd-n2" in by else float("nan")
    per_example = ratio(by["parle-n2"]["bytes_per_1000_examples"], by["dpsgd-n2"]["bytes_per_1000_examples"]) \
        if "parle-n2" in by and "dpsgd-n2" in by else float("nan")
    ctx.log(f"[comm-volume] ratio Parle / dp-SGD bytes per rank (2 ranks): {head:.2f}x per epoch, "
            f"{per_example:.2f}x per training example")
    return {"P": P, "bn_floats": bn, "rows": rows, "ratio": head,
            "ratio_name": "Parle / dp-SGD bytes per rank per epoch (2 ranks)",
            "per_example_ratio": per_example}
