"""Loss and error along the straight line between two networks: the interpolation barrier.

``theta(alpha) = (1 - alpha) * a + alpha * b`` for the parameters; BN running statistics
are not interpolated (a mixture of two networks' statistics describes neither) but
re-estimated for every ``alpha`` with one pass over training images, as the training code
does for the reference. The barrier is the largest excess of the loss (or error) over the
straight line joining the two ends. Between ``a`` and ``b`` aligned by weight matching it
says whether the alignment found a shared basin; between ``a`` and ``b`` as they are, it is
the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class InterpolationPath:
    """Validation loss and error (%) at each ``alpha``, and the barriers (max excess over
    the chord between the ends)."""

    alphas: list[float]
    loss: list[float]
    error: list[float]
    barrier_loss: float
    barrier_error: float

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def interpolate_states(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) a + alpha b`` for floating-point entries; integer buffers from ``a``."""
    return {k: ((1 - alpha) * a[k] + alpha * b[k]) if a[k].is_floating_point() else a[k].clone()
            for k in a}


@torch.no_grad()
def reestimate_bn(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """BN running statistics as the exact average over ``images`` (train-mode BN, dropout
    off, cumulative averaging)."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.AlphaDropout):
            m.eval()
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if len(batch) > 1:  # BN cannot normalise a batch of one
            model(batch)
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and top-1 error (%) of ``model`` (eval mode) on ``split``."""
    model.eval()
    loss, wrong = 0.0, 0
    for start in range(0, len(split), batch_size):
        x, y = split.images[start:start + batch_size], split.labels[start:start + batch_size]
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        wrong += int((out.argmax(1) != y).sum())
    return loss / len(split), 100.0 * wrong / len(split)


def _barrier(alphas: np.ndarray, values: list[float]) -> float:
    chord = (1 - alphas) * values[0] + alphas * values[-1]
    return float(np.max(np.asarray(values) - chord))


def interpolation_path(model: nn.Module, a: Mapping[str, torch.Tensor],
                       b: Mapping[str, torch.Tensor], train: Split, val: Split, *,
                       points: int = 11, batch_size: int = 500) -> InterpolationPath:
    """Loss and error on ``val`` at ``points`` evenly spaced ``alpha`` in [0, 1], BN
    re-estimated on ``train.images`` at each; ``model`` is a scratch instance of the right
    architecture (its weights are overwritten). Pass ``b`` already aligned to ``a``
    (:func:`~.permspec.permute_state`) for the aligned path."""
    alphas = np.linspace(0.0, 1.0, points)
    a = {k: torch.as_tensor(v) for k, v in a.items()}
    b = {k: torch.as_tensor(v) for k, v in b.items()}
    losses, errors = [], []
    for alpha in alphas:
        model.load_state_dict(interpolate_states(a, b, float(alpha)))
        reestimate_bn(model, train.images, batch_size)
        loss, error = evaluate(model, val, batch_size)
        losses.append(loss)
        errors.append(error)
    return InterpolationPath([float(x) for x in alphas], losses, errors,
                             _barrier(alphas, losses), _barrier(alphas, errors))


def plot_paths(labels: list[str], paths: list[dict[str, InterpolationPath]], out: str | Path,
               title: str) -> Path:
    """Validation loss and error along each pair's line: aligned solid, as-is dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(labels) // 3)  # legend rows: one entry per pair (colour), three a row
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2 + 0.2 * rows),
                                          layout="constrained")
    for k, (label, pair) in enumerate(zip(labels, paths)):
        color = f"C{k % 10}"
        for kind, style in (("aligned", "-"), ("unaligned", "--")):
            path = pair[kind]
            ax_loss.plot(path.alphas, path.loss, style, color=color, marker=".",
                         label=label if kind == "aligned" else None)
            ax_err.plot(path.alphas, path.error, style, color=color, marker=".")
    for ax, name in ((ax_loss, "validation loss"), (ax_err, "validation error (%)")):
        ax.set_xlabel("alpha  (0 = first network, 1 = second)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    ax_loss.set_yscale("log")  # the unaligned midpoints can be far above the ends
    # Below the panels: inside, the legend would cover the peaks it explains.
    fig.legend(*ax_loss.get_legend_handles_labels(), loc="outside lower center",
               ncol=min(3, len(labels)), fontsize="small")
    fig.suptitle(f"{title}: after alignment (solid) and as they are (dashed); "
                 "BN re-estimated at each point", fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
