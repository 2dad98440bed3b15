"""Error against epochs and against wall-clock minutes (the paper's Figures 2-5).

Reads ``RUN_DIR/metrics.jsonl`` (and the run's ``config.yaml`` for its label) only.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..train.metrics import read_metrics


def run_label(run_dir: Path) -> str:
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
        method = cfg.get("optim", {}).get("method", "?")
        return f"{cfg.get('name', run_dir.name)} ({method})"
    return run_dir.name


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None,
              train: bool = True) -> Path:
    """Draw validation (solid) and training (dotted) error of each run vs epoch and wall-clock."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_epoch, ax_wall) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for k, run_dir in enumerate(map(Path, run_dirs)):
        metrics_file = run_dir / "metrics.jsonl"
        if not metrics_file.is_file():
            raise FileNotFoundError(f"{metrics_file} not found: is {run_dir} a run directory?")
        records = read_metrics(metrics_file)
        val = [r for r in records if r.get("type") == "val"]
        syncs = [r for r in records if r.get("type") == "sync"]
        label = labels[k] if labels and k < len(labels) else run_label(run_dir)
        color = f"C{k % 10}"
        for ax, xkey, scale in ((ax_epoch, "epoch", 1.0), (ax_wall, "wall_s", 1 / 60)):
            if val:
                ax.plot([r[xkey] * scale for r in val], [r["val_error"] for r in val], "o-",
                        color=color, label=f"{label} val")
            if train and syncs:
                ax.plot([r[xkey] * scale for r in syncs], [r["train_error"] for r in syncs], ":",
                        color=color, alpha=0.7, label=f"{label} train")
    ax_epoch.set_xlabel("epoch")
    ax_wall.set_xlabel("wall-clock (minutes of training)")
    for ax in (ax_epoch, ax_wall):
        ax.set_ylabel("top-1 error (%)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax_epoch.legend(fontsize="small")
    fig.suptitle("reference validation error (solid) and replica training error (dotted)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
