"""The report's figures, one per benchmark (``bench-*.png``), drawn from the JSON results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
from matplotlib import ticker  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _plain_log(ax) -> None:
    """Log y axis labelled 0.1, 1, 20 rather than 10^-1, 10^0, 2x10^1."""
    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))


def _bars(ax, groups: list[str], series: dict[str, list[float | None]], *, log: bool = False,
          ylabel: str = "") -> None:
    """Grouped bars: one group per x label, one bar per series (None leaves a gap)."""
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        pairs = [(x, v) for x, v in zip(xs, values) if v is not None and v == v]
        if pairs:
            ax.bar([x for x, _ in pairs], [v for _, v in pairs], width, label=label, color=f"C{k}")
    ax.set_xticks(range(len(groups)), groups)
    if log:
        _plain_log(ax)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.3)


def optimizer(result: dict[str, Any], path: Path) -> Path:
    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), constrained_layout=True)
    axes = [axes] if len(models) == 1 else list(axes)
    keys = (("sgd", "torch SGD"), ("parle_inner", "Parle inner"), ("parle_outer", "Parle outer"))
    for ax, (name, r) in zip(axes, models.items()):
        groups = [label for _, label in keys]
        _bars(ax, groups, {"measured (median)": [r["rows"][k]["seconds"] * 1e3 for k, _ in keys],
                           "memory-bound floor": [r["rows"][k]["limit_seconds"] * 1e3 for k, _ in keys]},
              ylabel="ms per step")
        ax.set_title(f"{name} (P = {r['P']:,})")
    axes[0].legend(fontsize="small")
    fig.suptitle("Optimizer work per step, cold cache, 1 thread (floor = minimum bytes / copy bandwidth)")
    return _save(fig, path)


def sync(result: dict[str, Any], path: Path) -> Path:
    jobs = result["jobs"]
    models = [r["model"] for r in jobs[0]["results"]]
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.2), constrained_layout=True)
    axes = [axes] if len(models) == 1 else list(axes)
    names = (("parle_sync", "Parle sync (allreduce_mean_)"), ("bare_allreduce", "bare allreduce"),
             ("parle_step_sync", "sync inside a real Parle.step"),
             ("reference_sync", "reference: per-tensor Reduce+Bcast"))
    for ax, model in zip(axes, models):
        groups, series = [], {label: [] for _, label in names}
        for job in jobs:
            r = next(x for x in job["results"] if x["model"] == model)
            groups.append(f"{job['backend']}\n{job['ranks']} ranks")
            for key, label in names:
                t = r["times"].get(key)
                series[label].append(t["median"] * 1e3 if t else None)
        _bars(ax, groups, series, log=True, ylabel="ms per sync (slowest rank, median)")
        ax.set_title(f"{model}: one sync of {jobs[0]['results'][models.index(model)]['bytes'] / 2**20:.2f} MiB")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="small")
    fig.suptitle("Time per sync (a Parle outer step makes two; so does the reference script)")
    return _save(fig, path)


def time_to_accuracy(result: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8.5, 5), constrained_layout=True)
    for k, r in enumerate(result["runs"]):
        for j, rep in enumerate(r["reps"]):  # later repetitions dashed: same errors, other times
            val = rep["val"]
            ax.plot([v["wall_s"] for v in val], [v["val_error"] for v in val],
                    "o-" if j == 0 else "o--", ms=3, lw=1.2 if j == 0 else 0.8,
                    alpha=1.0 if j == 0 else 0.6, color=f"C{k}",
                    label=r["run"]["label"] if j == 0 else None)
    for target in result["targets"]:
        ax.axhline(target, color="grey", ls="--", lw=0.8)
        ax.text(ax.get_xlim()[1], target, f" {target:g}%", va="center", fontsize="small")
    _plain_log(ax)
    ax.set_xlabel("training wall-clock (s, evaluation excluded)")
    ax.set_ylabel("reference validation error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    reps = len(result["runs"][0]["reps"])
    ax.set_title("LeNet on mnist5k: validation error vs wall-clock"
                 + (f" ({reps} repetitions: first solid, others dashed)" if reps > 1 else ""))
    return _save(fig, path)


def parle_plot(result: dict[str, Any], path: Path) -> Path:
    """The same runs (first repetition) through the package's own ``parle-plot``."""
    script = Path(sys.executable).with_name("parle-plot")
    dirs = [str(r["reps"][0]["dir"]) for r in result["runs"]]
    labels = [r["run"]["label"] for r in result["runs"]]
    args = [*dirs, "--out", str(path), "--no-train", "--labels", *labels]
    cmd = [str(script), *args] if script.is_file() else \
        [sys.executable, "-c", "import sys; from parle_hpc.cli import plot_main; "
                               "sys.exit(plot_main(sys.argv[1:]))", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return path


def comm_volume(result: dict[str, Any], path: Path) -> Path:
    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    groups = [r["label"].replace(" (", "\n(") for r in rows]
    _bars(ax1, groups, {"measured (comm.stats)": [r["measured_bytes_per_epoch"] / 2**20 for r in rows],
                        "formula": [r["formula_bytes_per_epoch"] / 2**20 for r in rows]},
          ylabel="MiB per rank per epoch")
    ax1.set_title("per epoch (Parle epoch = B*L minibatches per replica)")
    ax1.legend(fontsize="small")
    _bars(ax2, groups, {"measured": [r["bytes_per_1000_examples"] / 2**20 for r in rows]},
          ylabel="MiB per rank per 1000 examples trained")
    ax2.set_title("per training example")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize="small")
    fig.suptitle("Bytes handed to collectives, LeNet on mnist5k (real runs)")
    return _save(fig, path)


def checkpoint(result: dict[str, Any], path: Path) -> Path:
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(10, 4.4), constrained_layout=True)
    keys = (("write_gathered", "write, gathered to rank 0"), ("write_parallel", "write, parallel HDF5"),
            ("dd_write", "dd write (fsync)"), ("read_cold", "read, cold"),
            ("read_warm", "read, page cache"), ("dd_read_cold", "dd read, cold"))
    groups = [f"{r['model']}, {r['replicas']} replicas\n{r['file_bytes'] / 2**20:.0f} MiB" for r in rows]
    _bars(ax, groups, {label: [r["times"][k]["median"] if k in r["times"] else None for r in rows]
                       for k, label in keys}, log=True, ylabel="seconds (median)")
    ax.legend(fontsize="small", ncol=2)
    ax.set_title("Checkpoint I/O vs raw sequential I/O of the same bytes, same disk")
    return _save(fig, path)


def overlap(result: dict[str, Any], path: Path) -> Path:
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["setting"], r["model"], r["pair"]): r["seconds"]["median"] for r in rows}
    fig, ax = plt.subplots(figsize=(8, 4.4), constrained_layout=True)
    series = {f"{pair}, {setting}": [by.get((setting, m, pair)) for m in models]
              for pair in ("independent", "permuted") for setting in ("default", "1 thread")}
    _bars(ax, [f"{m}\nP = {next(r['P'] for r in rows if r['model'] == m):,}" for m in models],
          series, log=True, ylabel="seconds per pair (median)")
    ax.legend(fontsize="small", title="pair, threads", title_fontsize="small")
    ax.set_title("Permutation alignment (parle_hpc.analysis.overlap.align)")
    return _save(fig, path)
