"""Render ``docs/benchmarks.md`` (and its ``bench-*.png``) from a results directory.

Everything numeric in the report comes from the JSON of one run of the runner, so the
report can be re-rendered (``python -m benchmarks --report-only``) but never drifts from
its numbers. Sentences that depend on a number (faster / slower) are chosen from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import plots
from .common import ROOT
from .run import load_results


# ---------------------------------------------------------------------- formatting
def _ms(seconds: float | None) -> str:
    return "—" if seconds is None or seconds != seconds else f"{seconds * 1e3:.3g} ms"


def _s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "not reached"
    return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}x"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.3g} MiB" if nbytes < 100 * 2**20 else f"{nbytes / 2**20:.0f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _img(report: Path, png: Path, alt: str) -> str:
    return f"![{alt}]({os.path.relpath(png, report.parent)})"


def _spread(t: dict[str, float]) -> str:
    return f"{t['p25'] * 1e3:.3g}–{t['p75'] * 1e3:.3g}"


# ---------------------------------------------------------------------- sections
def _header(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    load = ", ".join(f"{x:.1f}" for x in m.get("load_average_at_start", []))
    load_end = ", ".join(f"{x:.1f}" for x in summary.get("load_average_at_end", []))
    minutes = summary["runtime_s"] / 60 if summary.get("runtime_s") else float("nan")
    return f"""# Benchmarks

Reproducible measurements of `parle_hpc` against SGD, data-parallel SGD, the reference
implementation's communication and the machine's own limits. Every number below comes from
one run of `{summary['command']}` started {summary['started']} ({summary['mode']} mode,
{minutes:.1f} minutes in all); the JSON it wrote is in `benchmarks/results/{summary['mode']}/`
(not committed) and this page is rendered from it.

How to read them: the things compared are always measured **side by side in one process or
one job**, their repetitions interleaved (A B C A B C ...), and the **median** reported
(with the 25th–75th percentile where it matters). On this machine absolute times are noise:
it has {m['nproc']} cores shared with other engineers' builds and test suites (load average
{load} when this run started), so a ratio measured side by side means something and an
absolute time measured at another moment does not. No test asserts any timing.

## The machine

{_table(["", ""], [
        ["cores (`nproc`)", str(m["nproc"])],
        ["CPU (`lscpu` model name)", m["cpu_model"] or "?"],
        ["GPU", "none (CPU only)" if not m.get("cuda") else "yes"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS", m["os"]],
        ["Python / torch", f"{m['python']} / {m['torch']}"],
        ["MPI", m.get("mpi") or "?"],
        ["load average at start / end of the run (1, 5, 15 min)", f"{load} / {load_end}"]])}

Consequences that apply to every section: with 2 ranks each rank has a core to itself only
if nothing else runs; **3 ranks on 2 cores oversubscribe** (`mpirun --oversubscribe`), so
every 3-rank number includes time-slicing between ranks, and a collective waits for a rank
that is not running. The multi-rank jobs give each rank one intra-op thread (as `parle-train`
does when it splits the cores over its ranks).
"""


def _headlines(summary: dict[str, Any]) -> str:
    rows = []
    titles = {"optimizer": "1. Optimizer cost", "sync": "2. Sync cost",
              "time_to_accuracy": "3. Time to accuracy", "comm_volume": "4. Communication volume",
              "checkpoint": "5. Checkpoint I/O", "overlap": "6. Overlap analysis"}
    for name, info in summary["benchmarks"].items():
        value = info.get("ratio")
        shown = "failed: " + info["error"][:80] if "error" in info else _x(value)
        rows.append([titles.get(name, name), info.get("ratio_name") or "", shown,
                     f"{info['seconds']:.0f} s"])
    return "## Headline ratios\n\n" + _table(["benchmark", "ratio", "value", "runtime"], rows) + "\n"


def _optimizer(r: dict[str, Any], report: Path, img: Path) -> str:
    png = plots.optimizer(r, img / "bench-optimizer.png")
    bw = r["copy_bandwidth"]
    rows = []
    for name, m in r["models"].items():
        labels = {"sgd": "torch SGD (foreach, Nesterov)", "parle_inner": "Parle inner step",
                  "parle_outer": "Parle outer step"}
        for key, label in labels.items():
            row = m["rows"][key]
            spread = _spread(m["times"][key]) if key in m["times"] else "(difference of medians)"
            rows.append([name, label, _ms(row["seconds"]), spread, _mib(row["min_bytes"]),
                         _ms(row["limit_seconds"]), _x(row["x_limit"], 1), _x(row["x_sgd"]),
                         f"{row['bytes_x_sgd']:.1f}x / {row['implemented_bytes_x_sgd']:.1f}x"])
        a = m["amortised"]
        rows.append([name, f"Parle per minibatch, L = {a['L']} (inner + outer/L)", _ms(a["seconds"]),
                     "", "", "", "", _x(a["x_sgd"]), f"{a['bytes_x_sgd']:.2f}x / —"])
    wrn = r["models"].get("wrn-16-4", next(iter(r["models"].values())))
    inner = wrn["rows"]["parle_inner"]
    predicted = inner["implemented_bytes_x_sgd"]
    verdict = ("below what its launched kernels' traffic predicts, because SGD's many small "
               "`foreach` kernels run further from the copy bandwidth than Parle's few kernels "
               "over one flat vector (compare the x floor column)"
               if inner["x_sgd"] < predicted * 0.85 else
               "within what its launched kernels' traffic predicts"
               if inner["x_sgd"] <= predicted * 1.25 else
               "above what its launched kernels' traffic predicts")
    return f"""## 1. Optimizer cost: one Parle step vs `torch.optim.SGD`

Only the optimizer's work: gradients are filled once, then `opt.step()` is timed for
`torch.optim.SGD(momentum=0.9, nesterov=True, foreach=True)` (with the model's weight
decay: 0 for LeNet, 5e-4 for WRN-16-4) and for `Parle` on identical copies of the same
parameters, interleaved. The **inner step** is timed on a Parle with `L` so large that no
outer step comes; the **outer step** is the median of a Parle with `L = 1` (every step is
an inner plus an outer step) minus the inner median. Parle gets the size-1 `Single`
communicator, whose allreduce is the identity: this is the outer step's arithmetic, not its
communication (section 2). Each timed step starts from a **cold cache** (a 64 MiB buffer is
rewritten, untimed, just before it), one intra-op thread.

**Bytes.** Counted from the update equations as P-length float32 vectors read plus written,
each vector once (what a fused kernel would move): SGD reads p, g, buf and writes buf, p
(5 vectors); the Parle inner step reads g, y, x, v, z and writes v, y, z (8); the outer step
stages z into the sync buffer (2), reads x, z, r, u and writes u, x, y, z and the sync-2
buffer (9): 11 vectors. The floor is those bytes divided by this machine's copy bandwidth,
**{bw['bytes_per_s'] / 1e9:.1f} GB/s** (read + write, `dst.copy_(src)` of a
{bw['numel'] * 4 / 2**20:.0f} MiB float32 tensor, median of {bw['seconds']['n']}). The last
column gives the bytes ratio to SGD twice: for the minimum above, and for the kernels the
code actually launches (one read per input and one write per output of every tensor
operation: SGD 11 vectors, 14 with weight decay; Parle inner 20 (weight decay folds into its first operation);
outer 30; see `benchmarks/optimizer_cost.py`).

{_table(["model", "step", "median", "p25–p75 (ms)", "min bytes", "floor", "x floor", "x SGD",
         "bytes x SGD (min / as launched)"], rows)}

{_img(report, png, "optimizer cost")}

What it means: an element-wise update cannot beat its bytes, so the ratio to read against
is the bytes ratio: Parle's inner step must move 1.6x what SGD moves, and as written it
launches kernels that move {inner['implemented_bytes_x_sgd']:.1f}x. Measured on WRN-16-4
(2.7 M parameters, vectors far larger than the 32 MiB L3) the inner step costs
**{_x(inner['x_sgd'])} an SGD step**, {verdict};
the outer step comes once every `L` minibatches, so per minibatch Parle's optimizer costs
{_x(wrn['amortised']['x_sgd'])} SGD's at `L = 25`. LeNet's vectors (0.5 MiB) stay in cache
within a step and its times are dominated by per-call overheads (SGD's `foreach` over 14
tensors, Parle's Python bookkeeping), so its floor ratios say little; its outer step, which
follows the inner step of the same minibatch, finds its vectors in cache and can come in
under a floor computed for DRAM. Against a forward and
backward pass (tens of milliseconds for LeNet on a core) either optimizer is small.
"""


def _sync(r: dict[str, Any], report: Path, img: Path) -> str:
    png = plots.sync(r, img / "bench-sync.png")
    rows = []
    verified = []
    for job in r["jobs"]:
        for m in job["results"]:
            t = {k: v["median"] for k, v in m["times"].items()}
            rows.append([job["backend"], str(job["ranks"]), m["model"], _mib(m["bytes"]),
                         str(m["tensors"]), _ms(t["parle_sync"]), _spread(m["times"]["parle_sync"]),
                         _ms(t["bare_allreduce"]), _spread(m["times"]["bare_allreduce"]),
                         _x(m["ratios"]["parle_over_bare"]), _ms(t["parle_step_sync"]),
                         _ms(t.get("reference_sync")),
                         _x(m["ratios"].get("reference_over_parle"))])
            verified.append(m["two_allreduces_of_P"])
    ref_text = "; ".join(
        f"{m['model']} ({m['tensors']} tensors, {_mib(m['bytes'])}) on {job['ranks']} ranks: "
        f"{_x(m['ratios']['reference_over_parle'])}"
        for job in r["jobs"] if job["backend"] == "mpi" for m in job["results"])
    skipped = ("\n\nNot run: " + "; ".join(r["skipped"]) + ".") if r.get("skipped") else ""
    mpi_rows = [(job["ranks"], m) for job in r["jobs"] if job["backend"] == "mpi"
                for m in job["results"]]
    if mpi_rows:
        n_big, m_big = max(mpi_rows, key=lambda nm: nm[1]["ratios"]["reference_over_parle"])
        n_small, m_small = min(mpi_rows, key=lambda nm: nm[1]["ratios"]["reference_over_parle"])
        largest_text = (f"in this run the gap was largest for {m_big['model']} on {n_big} ranks "
                        f"({_x(m_big['ratios']['reference_over_parle'])}) and smallest for "
                        f"{m_small['model']} on {n_small} ranks "
                        f"({_x(m_small['ratios']['reference_over_parle'])}), and which case "
                        "comes out on top changes from run to run on this machine."
                        + (" The reference was the slower in every case." if
                           m_small["ratios"]["reference_over_parle"] > 1.1 else ""))
    else:
        largest_text = ""
    return f"""## 2. Sync cost: Parle's sync vs a bare allreduce vs the reference implementation

`benchmarks/sync_worker.py` under `mpirun -np 2` and `-np 3`, one job per backend (mpi4py;
torch.distributed over gloo; Horovod on CPU, MPI controller), for buffers the size of
LeNet and WRN-16-4. In each job, interleaved, each preceded by a barrier and reported as the
slowest rank's time (median of {r['reps']}):

* **Parle sync**: `Communicator.allreduce_mean_` of one contiguous P-float buffer: the call
  Parle's step makes at each of its two syncs per outer step (sum-allreduce plus the division);
* **bare allreduce**: the library's own in-place sum-allreduce of the same bytes
  (`comm.Allreduce(MPI.IN_PLACE, array)`, `dist.all_reduce`, `hvd.allreduce_(op=Sum)`);
* **in a real step**: half the collective seconds `comm.stats` records inside a real
  `Parle.step()` that ends an outer step; this includes waiting for the other ranks to
  finish their arithmetic. In every job `comm.stats` counted exactly two allreduces of 4P
  bytes in that step: {'yes' if all(verified) else 'NO'};
* **reference**: the authors' later public MPI script's `sync_with_master` re-created with
  mpi4py in `benchmarks/reference_sync.py`: for every parameter tensor, host NumPy,
  `comm.Reduce` to rank 0; a Reduce of the loss; barrier; rank 0 divides; for every tensor
  `comm.Bcast`; barrier. It is called twice per outer step as well, so per-sync ratios are
  per-round ratios. (mpi4py only: it is an MPI script.)

{_table(["backend", "ranks", "model", "bytes", "tensors", "Parle sync", "p25–p75 (ms)",
         "bare allreduce", "p25–p75 (ms)", "Parle / bare", "in a real step", "reference",
         "reference / Parle"], rows)}

{_img(report, png, "sync cost")}

What it means: *Parle / bare* is the price of the communicator layer (timing, counting and the
division by n, a pass over the buffer; Horovod's `Average` divides inside Horovod) over
the library call it wraps: near 1 means the sync costs what the library costs for those
bytes, the best a flat-buffer design can do (the division is one more pass over the buffer,
and the small LeNet syncs feel the Python wrapper's microseconds). Where the quartiles of the
two overlap, as they mostly do, their difference is the machine's noise, including ratios
below 1.

*Reference / Parle* is what fusing buys ({ref_text}). The reference pays twice: in latency,
`2 x tensors + 1` rooted collectives and two barriers per sync where Parle makes one call;
and in bandwidth, every byte goes to rank 0 and back (a reduce, then a broadcast), rank 0
summing all n buffers alone where an allreduce spreads the reduction over the ranks. The
first dominates small buffers, the second large ones; {largest_text} On one node Open MPI's
shared-memory transport turns all of these into memory copies, not network transfers;
across nodes the per-collective latency, and with it the reference's penalty, grows. The gloo numbers are TCP
over loopback. 3-rank numbers oversubscribe 2 cores: a rank waiting in a collective may not
be running, which inflates and spreads them.{skipped}
"""


def _tta(r: dict[str, Any], report: Path, img: Path) -> str:
    png = plots.time_to_accuracy(r, img / "bench-time-to-accuracy.png")
    png2 = plots.parle_plot(r, img / "bench-time-to-accuracy-parle-plot.png")
    targets = r["targets"]

    def each(values: list[float | None]) -> str:
        return " / ".join("—" if v is None else f"{v:.3g}" for v in values)

    rows = []
    for row in r["table"]:
        rows.append([row["label"], str(row["ranks"]), str(row["epochs"]),
                     f"{row['best_val_error']:.2f}%", f"{row['final_val_error']:.2f}%"]
                    + [f"**{_s(row[f'time_to_{t:g}'])}** ({each(row[f'time_to_{t:g}_reps'])})"
                       for t in targets]
                    + [f"{_s(row['train_wall_s'])} ({each(row['train_wall_s_reps'])})",
                       _s(row["comm_s"]), _s(row["elapsed_s"])])
    names = {"dpsgd": "dp-SGD", "sgd": "SGD (2 threads)", "sgd1": "SGD (1 thread)"}
    ratio_rows = []
    from .time_to_accuracy import ratios_from_table

    for key, value in sorted(ratios_from_table(r["table"]).items()):
        base, rest = key.split("_over_parle_")
        n, target = rest.split("_at_")
        ratio_rows.append([f"{names[base]} / Parle {n.replace('n', 'n=')}, to {target}%", _x(value)])
    cmds = "\n".join(rep["command"].replace(str(ROOT) + "/", "")
                     for rep in (x["reps"][0] for x in r["runs"]))
    same = all(row["same_trajectory"] for row in r["table"])
    by = {row["name"]: row for row in r["table"]}
    last = targets[-1]
    lines = []
    for n in (2, 3):
        p, d = by.get(f"parle-n{n}"), by.get(f"dpsgd-n{n}")
        if not (p and d):
            continue
        tp, td = p[f"time_to_{last:g}"], d[f"time_to_{last:g}"]
        if tp and td:
            faster = "faster" if tp < td else "slower"
            lines.append(f"with {n} ranks Parle reached {last:g}% in {_s(tp)} of training, "
                         f"dp-SGD in {_s(td)}: Parle {td / tp:.2f}x {faster}"
                         if faster == "faster" else
                         f"with {n} ranks Parle reached {last:g}% in {_s(tp)} of training, "
                         f"dp-SGD in {_s(td)}: Parle {tp / td:.2f}x slower")
        else:
            lines.append(f"with {n} ranks " + ("Parle" if not tp else "dp-SGD")
                         + f" did not reach {last:g}% within its epochs")
    result_text = "; ".join(lines) if lines else "no pair of runs reached the last target"
    comm_share = ", ".join(f"{row['label']} {100 * row['comm_s'] / row['train_wall_s']:.0f}%"
                           for row in r["table"] if row["ranks"] > 1 and row["train_wall_s"])
    dp_share = max((row["comm_s"] / row["train_wall_s"] for row in r["table"]
                    if row["name"].startswith("dpsgd") and row["train_wall_s"]), default=0.0)
    dp_text = ("That is mostly waiting: other users take the cores in turn, so one rank often "
               "arrives late, and dp-SGD, which meets its peers every minibatch, waits L times "
               "as often as Parle." if dp_share > 0.2 else
               "So dp-SGD loses little to communication on this machine.")
    spreads = [max(row["train_wall_s_reps"]) / min(row["train_wall_s_reps"]) for row in r["table"]
               if len(row["train_wall_s_reps"]) > 1 and min(row["train_wall_s_reps"]) > 0]
    noise_text = (f"The repetitions of one run differed by up to {max(spreads):.1f}x in training "
                  "time, which is how much the load of other users moved during this run. "
                  if spreads else "")
    if "sgd" in by and "sgd-1thread" in by and by["sgd"]["train_wall_s"] \
            and by["sgd-1thread"]["train_wall_s"]:
        two = by["sgd"]["train_wall_s"] / by["sgd"]["epochs"]
        one = by["sgd-1thread"]["train_wall_s"] / by["sgd-1thread"]["epochs"]
        noise_text += (f"SGD took {two:.2f} s per epoch with the default two intra-op threads and "
                       f"{one:.2f} s with one: " + (
                           "two threads of one process on two busy cores spend much of their time "
                           "waiting for each other." if two > one else
                           "the second core helped."))
    def per_epoch(names):
        return [by[k]["train_wall_s"] / by[k]["epochs"] for k in names
                if by[k].get("epochs") and by[k].get("train_wall_s")]

    def span(values):
        lo, hi = min(values), max(values)
        return f"{lo:.1f} s" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}–{hi:.1f} s"

    fast = per_epoch([k for k in by if not k.startswith("parle")])
    slow = per_epoch([k for k in by if k.startswith("parle")])
    quantum_text = ((f"an epoch took {span(fast)} for SGD and dp-SGD" if fast else "")
                    + (", " if fast and slow else "")
                    + (f"{span(slow)} for Parle (`L` passes per epoch)" if slow else "")
                    ) or "one epoch"
    same_text = ("followed identical error trajectories" if same
                 else "did NOT all follow the same error trajectory")
    ratio_table = (_table(["ratio of wall-clock to target", "value"], ratio_rows) if ratio_rows
                   else "(no ratios: targets not reached)")
    return f"""## 3. Time to accuracy: LeNet on mnist5k

Real `parle-train` runs, launched through `benchmarks/train_stats.py` (which runs the same
entry point and only adds a dump of each rank's `comm.stats` for section 4). Held equal: LeNet,
mnist5k (4,000 training / 1,000 validation digits), learning rate 0.1 constant, Nesterov
momentum 0.9, 128 examples per step (for dp-SGD the *global* minibatch, split over the
ranks; 126 on 3 ranks so it splits evenly), the reference evaluated after every epoch
(`train.eval_every=1`; `wall_s` is training time excluding evaluation), no checkpoints, one
metrics line per epoch (`train.log_every=B`: with dp-SGD every minibatch is a sync, and the
default of a line per sync would add a metrics allreduce to each of its minibatches).
Parle uses `L = {r['parle_L']}`, not the paper's 25: a Parle epoch is `B x L` minibatches per
replica and the reference is evaluated once per epoch, so with `L = 25` the time to a target
could only be read to the nearest 25 passes over the data. Time to a target is the training
time at the first evaluation at or below it, so it is quantised to epochs: {quantum_text}. The runs cannot
share the machine, so they run one after the other and the whole set ran {r['reps']} times,
interleaved; times are medians over the repetitions (each repetition in brackets). With fixed
seeds the repetitions {same_text}; only their wall-clock differs.

{_table(["run", "ranks", "epochs", "best val error", "final val error"]
         + [f"time to {t:g}% (s)" for t in targets]
         + ["training time (s)", "of which comm", "elapsed incl. evaluation"], rows)}

{ratio_table}

{_img(report, png, "validation error vs wall-clock")}

The same runs through the package's `parle-plot` (left: per epoch, whose length differs
between methods; right: per minute of training):

{_img(report, png2, "parle-plot of the runs")}

What it means: {result_text}. The paper's claim (Parle reaches a given error 2–4x sooner than
data-parallel SGD) rests on GPUs whose minibatch compute is fast and whose every-step
allreduce across machines is expensive. Here a sync is a shared-memory copy of 0.5 MiB that
takes about a tenth of a millisecond when the ranks arrive together (section 2); the share
of training time spent inside collectives, which counts waiting for the slowest rank (and
for dp-SGD one small control allreduce per minibatch besides the gradient's), was
{comm_share}. {dp_text} Whatever Parle gains here has to come from optimisation (a reference
averaged over replicas that each take full 128-example steps), set against the `L` times
more minibatches each replica computes per epoch. {noise_text}

Commands (run from the repository root):

```
{cmds}
```
"""


def _comm(r: dict[str, Any], report: Path, img: Path) -> str:
    png = plots.comm_volume(r, img / "bench-comm-volume.png")
    rows = []
    for row in r["rows"]:
        rows.append([row["label"], f"{row['epochs']:.3g}", f"{row['syncs']:,}",
                     f"{row['measured_allreduce_bytes']:,}", f"{row['predicted_allreduce_bytes']:,}",
                     "yes" if row["measured_matches_prediction"] else "no",
                     _mib(row["measured_bytes_per_epoch"]), _mib(row["formula_bytes_per_epoch"]),
                     _mib(row["bytes_per_1000_examples"]),
                     f"{row['small_collectives_per_epoch']:.0f}",
                     "yes" if row["ranks_agree"] else "no"])
    P, B = r["P"], 4000 // 128
    return f"""## 4. Communication volume: bytes per rank per epoch

Measured by the communicator itself: every collective adds its buffer's bytes to
`comm.stats` (per operation name), and `benchmarks/train_stats.py` writes each rank's
counters when the run of section 3 ends. Formula, for comparison (LeNet: P = {P:,}
parameters, 4 bytes each; B = {B} minibatches per pass):

* Parle: 2 allreduces of 4P bytes per outer step, B outer steps per epoch:
  2 x 4 x {P:,} x {B} = **{_mib(2 * 4 * P * B)} per epoch**;
* dp-SGD: 1 allreduce of 4P bytes per minibatch, B minibatches per epoch:
  4 x {P:,} x {B} = **{_mib(4 * P * B)} per epoch**.

"Predicted" adds what the loop does besides: one P-float collective at start-up (Parle's
first reference; dp-SGD's is a broadcast, counted apart) and, at each evaluation, one
allreduce of the {r['bn_floats']:,} BN running statistics. The per-example column divides by
the examples each rank trained on (a Parle replica sees L x 128 per sync; a dp-SGD rank
128/n per minibatch). "Small collectives" are the loop's control and metric allreduces
(a few floats each: stop/NaN flags every sync, metrics at each log line and evaluation).

{_table(["run", "epochs", "syncs", "allreduce bytes (rank 0)", "predicted", "equal",
         "per epoch, measured", "per epoch, formula", "per 1000 examples", "small collectives / epoch",
         "all ranks equal"], rows)}

{_img(report, png, "communication volume")}

What it means: per *epoch* Parle hands twice dp-SGD's bytes to its collectives, because its
epoch is `B` outer steps of two syncs each; but a Parle epoch is `L` passes of every replica
over the data, so per *example trained on* Parle moves {_x(r['per_example_ratio'])} what dp-SGD
moves with 2 ranks (1/L when each dp-SGD rank takes 64 of the 128). What a network carries
depends on the algorithm: a ring allreduce sends `2 (n-1)/n` times the buffer per rank, i.e.
the buffer itself for n = 2. dp-SGD's control allreduce runs every minibatch (Parle's every L):
one small-message latency per step that the formula above leaves out.
"""


def _checkpoint(r: dict[str, Any], report: Path, img: Path) -> str:
    png = plots.checkpoint(r, img / "bench-checkpoint.png")
    rows = []
    for row in r["rows"]:
        t = {k: v["median"] for k, v in row["times"].items()}
        rows.append([row["model"], str(row["replicas"]), _mib(row["file_bytes"]),
                     _s(t["write_gathered"]), _s(t.get("write_parallel")), _s(t["dd_write"]),
                     _x(row["ratios"]["write_gathered_over_dd"], 1),
                     _x(row["ratios"].get("write_parallel_over_dd"), 1),
                     _s(t["read_cold"]), _s(t["read_warm"]), _s(t["validate_warm"]),
                     _s(t["dd_read_cold"]), _x(row["ratios"]["read_cold_over_dd_read"], 1)])
    return f"""## 5. Checkpoint I/O: n replicas vs `dd` of the same bytes

`benchmarks/checkpoint_worker.py` under `mpirun -np n`: each rank holds a real replica (LeNet
or WRN-16-4 with a Parle optimizer: weights, BN statistics, the five optimizer vectors, RNG and
sampler state, captured by `capture_replica`) and the ranks call `save_checkpoint` together.
Interleaved per repetition: the **gathered** write (`parallel=False`: replicas sent to rank 0
one at a time, rank 0 writes with Fletcher-32 and a SHA-256 per dataset), the **parallel**
write (`parallel=True`: all ranks write one file with HDF5's mpio driver; h5py here is built
with MPI), `dd if=/dev/zero of=F bs=1M count=<file size in MiB> conv=fsync` into the same
directory, `read_checkpoint` of every dataset (cold: the file's pages dropped from the page
cache first with `posix_fadvise(DONTNEED)`, this file only; warm: from the page cache),
`validate_checkpoint` (every dataset read and hashed: what `--resume auto` does to each
candidate file), and `dd if=F of=/dev/null bs=1M` of the dd file, cold. Both checkpoint paths
fsync the file and its directory, as dd's `conv=fsync` does the file. Seconds are the slowest
rank's, medians.

{_table(["model", "replicas", "file", "write gathered", "write parallel", "dd write",
         "gathered / dd", "parallel / dd", "read cold", "read warm", "validate", "dd read cold",
         "read / dd read"], rows)}

{_img(report, png, "checkpoint I/O")}

What it means: `dd` shows what the disk takes for these bytes (here
{_mib(r['rows'][-1]['dd_write_bytes_per_s'])}/s with fsync: a virtual disk whose host
acknowledges fsync quickly); everything a checkpoint write costs beyond it is CPU work on the
way: the gathered path converts every replica to float64 to broadcast it (twice the bytes),
sends the replicas one at a time to rank 0, computes a SHA-256 per dataset and Fletcher-32
checksums, all on one rank; the parallel path lets every rank write its own replica and
hashes on every rank. Reading goes through h5py dataset by dataset (and, for the gathered
file, Fletcher-32 verification), against dd's one sequential stream.
"""


def _overlap(r: dict[str, Any], report: Path, img: Path) -> str:
    if r.get("skipped"):
        return f"## 6. Overlap analysis time\n\nSkipped: {r['skipped']}\n"
    png = plots.overlap(r, img / "bench-overlap.png")
    by = {(row["setting"], row["model"], row["pair"]): row for row in r["rows"]}
    indep = {row["model"]: row for row in r["rows"]
             if row["pair"] == "independent" and row["setting"] == "1 thread"}
    slowest = max(indep.values(), key=lambda row: row["seconds"]["median"])
    largest = max(indep.values(), key=lambda row: row["P"])
    if slowest is largest:
        scaling = (f"the largest network, {largest['model']}, is also the slowest to align "
                   f"({_s(largest['seconds']['median'])} per pair)")
    else:
        scaling = (f"{slowest['model']} ({slowest['P']:,} parameters, {slowest['sweeps']} sweeps) "
                   f"takes longer than the larger {largest['model']} ({largest['P']:,}, "
                   f"{largest['sweeps']} sweeps): the cost follows the width of the layers (each "
                   "assignment is cubic in the number of units) and the number of sweeps, not "
                   "the parameter count; a WRN's residual blocks tie the permutations of many "
                   "layers into a few groups")
    rows = []
    for (setting, model, pair), one in by.items():
        if setting != "1 thread":
            continue
        default = by[("default", model, pair)]
        rows.append([model, f"{one['P']:,}", pair, _s(default["seconds"]["median"]),
                     _s(one["seconds"]["median"]),
                     _x(default["seconds"]["median"] / one["seconds"]["median"], 1),
                     str(one["sweeps"]), f"{one['overlap']:.3f}", f"{one['unaligned']:.3f}",
                     _s(one["heatmap_seconds"])])
    worst = max(by["default", m, p]["seconds"]["median"] / row["seconds"]["median"]
                for (setting, m, p), row in by.items() if setting == "1 thread")
    return f"""## 6. Overlap analysis time

`parle_hpc.analysis.overlap.align` (permutation alignment by coordinate descent over the hidden
layers, each step a `scipy.optimize.linear_sum_assignment`) on two kinds of pair: two
**independently initialised** networks (seeds 0 and 1: the pair the null baseline aligns, with
no planted solution) and a network with a **randomly permuted copy** of itself plus 1% noise
(the alignment must find the permutation; overlap ~1). Trained networks lie in between. The
paper's Figure 1 heat map of six networks is 15 pairs.

The thread count of NumPy's BLAS and of torch is fixed when they are imported, so
`benchmarks/overlap_worker.py` runs in its own process per setting: **default** (a thread
per core, what a user gets) and **1 thread** (`OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1`),
the two processes alternated, median of {r['reps']} each.

{_table(["model", "parameters", "pair", "default threads", "1 thread", "default / 1 thread",
         "sweeps", "aligned overlap", "unaligned", "15 pairs, 1 thread"], rows)}

{_img(report, png, "overlap analysis time")}

What it means: {scaling}. A planted permutation is found in fewer sweeps than a pair with no
common structure. With the libraries' default threads the same alignment took up to
{worst:.1f}x longer than with one: on two cores that other users keep busy, a BLAS call split
over two threads waits for the slower one, and how long varies with everyone else's load. Run the
analysis with `OMP_NUM_THREADS=1` on a shared machine. It runs offline from checkpoints, so a
six-network heat map costs the last column.
"""


def _reproduce(summary: dict[str, Any]) -> str:
    return f"""## Reproducing

```
make bench                 # full mode (this page): about {summary['runtime_s'] / 60:.0f} minutes here
make bench QUICK=1         # quick mode (= make bench-quick): every benchmark, tiny sizes, < 2 minutes;
                           # writes benchmarks/results/quick/ and leaves docs/ alone
python -m benchmarks --only sync,checkpoint     # a subset (names: optimizer, sync,
                                                # time_to_accuracy, comm_volume, checkpoint, overlap)
python -m benchmarks --report-only              # re-render this page from benchmarks/results/full/
```

Each benchmark prints its ratio last. `tests/e2e/test_bench_smoke.py` runs the quick mode in
CI and checks only that it exits 0 and writes its JSON; nothing asserts a time. The console
log of the run is `benchmarks/results/<mode>/log.txt`, including every `mpirun` command.
"""


def render(out: Path, report: Path, img_dir: Path) -> Path:
    """Write the report for the results in ``out``; returns its path."""
    summary, results = load_results(out)
    img_dir.mkdir(parents=True, exist_ok=True)
    parts = [_header(summary), _headlines(summary)]
    sections = {"optimizer": _optimizer, "sync": _sync, "time_to_accuracy": _tta,
                "comm_volume": _comm, "checkpoint": _checkpoint, "overlap": _overlap}
    for name, section in sections.items():
        r = results.get(name)
        if r is None:
            continue
        if "error" in r:
            parts.append(f"## {name}\n\nFailed in this run: `{r['error'][:500]}`\n")
            continue
        parts.append(section(r, report, img_dir))
    parts.append(_reproduce(summary))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(parts).replace("\n\n\n", "\n\n"))
    return report

