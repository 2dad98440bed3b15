"""``parle-overlap CKPT [CKPT ...] --out DIR``: pairwise permutation-invariant overlaps.

One checkpoint: every replica and the reference of that run. Several: one network per run
(its reference; ``--use replicas`` for every replica, ``--use all`` for both). A CKPT may
also be a run directory (its newest checkpoint is taken). Writes ``DIR/overlap.json`` and
``DIR/overlap.png`` (heat maps before and after alignment, as the paper's Figure 1) and
prints the matrices.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .interpolate import InterpolationPath, interpolation_path, plot_paths
from .overlap import (Alignment, CheckpointNetworks, SpecError, align, model_for_state,
                      null_baseline, permute_state, read_checkpoint)

EPILOG = """\
examples:
  parle-overlap runs/demo --out runs/demo/overlap                 replicas + reference of one run
  parle-overlap runs/sgd-s1 runs/sgd-s2 runs/sgd-s3 --out cmp     references of three runs
  parle-overlap runs/a runs/b --use replicas --out cmp            every replica of both runs

overlap = mean over conv/linear layers of the cosine similarity of the layer's weights (bias
appended), before and after permuting hidden units to match (docs/overlap.md).
exit codes: 0 done, 2 bad arguments or checkpoints that cannot be compared
"""


@dataclass
class Network:
    """One network to compare: its label, where it came from, and its state dict."""

    label: str
    checkpoint: Path
    which: str  # "reference" or "replica <k>"
    state: dict[str, np.ndarray]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parle-overlap", description=__doc__.splitlines()[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="checkpoint .h5 files or run directories (newest checkpoint)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--use", choices=("auto", "reference", "replicas", "all"), default="auto",
                   help="networks taken from each checkpoint; auto: all of one checkpoint, "
                        "the reference of each of several (default)")
    p.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="one label per checkpoint (default: the run directory's name)")
    p.add_argument("--null-seeds", nargs=2, type=int, default=(0, 1), metavar=("S1", "S2"),
                   help="seeds of the two independently initialised networks of the null "
                        "baseline (default 0 1)")
    p.add_argument("--max-sweeps", type=int, default=100,
                   help="limit on coordinate-descent sweeps per pair (default 100)")
    p.add_argument("--barrier", action="store_true",
                   help="also the loss along the straight line between each pair, aligned "
                        "and as they are, BN re-estimated at each point (needs the run's "
                        "dataset; writes barrier.png)")
    p.add_argument("--points", type=int, default=11,
                   help="--barrier: evenly spaced points on each line (default 11)")
    p.add_argument("--bn-images", type=int, default=5000,
                   help="--barrier: training images for BN re-estimation (default 5000)")
    p.add_argument("--eval-images", type=int, default=10000,
                   help="--barrier: validation images evaluated (default 10000)")
    p.add_argument("--data-root", default=None,
                   help="--barrier: dataset directory (default: the run's data.root)")
    p.add_argument("--title", default=None, help="heat-map title")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def resolve_checkpoint(arg: str) -> Path:
    """``arg`` itself if it is a file; for a run directory its newest checkpoint."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir():
        ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = ckpt_dir / "latest"
        if latest.is_file():
            named = ckpt_dir / latest.read_text().strip()
            if named.is_file():
                return named
        files = sorted(ckpt_dir.glob("ckpt-*.h5"))
        if files:
            return files[-1]
        raise FileNotFoundError(f"no ckpt-*.h5 in {ckpt_dir}")
    raise FileNotFoundError(f"{arg}: no such checkpoint or run directory")


def collect_networks(ckpts: list[CheckpointNetworks], use: str,
                     labels: list[str] | None) -> list[Network]:
    """The networks to compare, labelled (``use`` as for ``--use``)."""
    if use == "auto":
        use = "all" if len(ckpts) == 1 else "reference"
    run_labels = labels or [c.run_name for c in ckpts]
    if len(set(run_labels)) < len(run_labels):  # two runs with one directory name
        run_labels = [f"{label} [{k}]" for k, label in enumerate(run_labels)]
    single = len(ckpts) == 1
    nets = []
    for ckpt, run in zip(ckpts, run_labels):
        if use in ("replicas", "all"):
            for k, state in enumerate(ckpt.replicas):
                label = f"replica {k}" if single else f"{run}/{k}"
                nets.append(Network(label, ckpt.path, f"replica {k}", state))
        if use in ("reference", "all"):
            nets.append(Network("reference" if single and use == "all" else run, ckpt.path,
                                "reference", ckpt.reference))
    return nets


def overlap_matrices(nets: list[Network], spec, *, max_sweeps: int = 100, quiet: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, Alignment]]]:
    """Aligned and unaligned overlap of every pair (symmetric; 1 on the diagonal) and each
    pair's alignment."""
    n = len(nets)
    aligned, unaligned = np.eye(n), np.eye(n)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    details = []
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc="aligning pairs", unit="pair", file=sys.stderr)
    for count, (i, j) in enumerate(pairs, 1):
        started = time.perf_counter()

        def sweep_done(sweep: int, value: float) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{nets[i].label} ~ {nets[j].label}: sweep {sweep}, "
                                    f"overlap {value:.4f}")

        result: Alignment = align(nets[i].state, nets[j].state, spec, max_sweeps=max_sweeps,
                                  progress=sweep_done)
        aligned[i, j] = aligned[j, i] = result.overlap
        unaligned[i, j] = unaligned[j, i] = result.unaligned
        details.append((i, j, result))
        if bar is not None:
            bar.update()
        elif not quiet:
            print(f"parle-overlap: pair {count}/{len(pairs)} {nets[i].label} ~ {nets[j].label}: "
                  f"aligned {result.overlap:.4f}, unaligned {result.unaligned:.4f} "
                  f"({result.sweeps} sweeps, {time.perf_counter() - started:.1f}s)",
                  file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    return aligned, unaligned, details


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def decimals(matrix: np.ndarray, minimum: int) -> int:
    """Decimals that keep the off-diagonal values apart from 1 (replicas of one Parle run
    can agree to 1e-5), at least ``minimum`` and at most 7."""
    off = _off_diagonal(matrix)
    gap = float(np.min(1.0 - off)) if off.size else 1.0
    if gap <= 0:
        return minimum
    return int(min(7, max(minimum, np.ceil(-np.log10(gap)) + 1)))


def format_matrix(matrix: np.ndarray, labels: list[str]) -> str:
    """A plain-text table of ``matrix`` with row and column labels."""
    digits = decimals(matrix, 4)
    width = max(digits + 3, *(len(label) for label in labels))
    lines = [" " * width + "".join(f"  {label:>{width}}" for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f"{label:>{width}}" + "".join(f"  {v:>{width}.{digits}f}" for v in row))
    return "\n".join(lines)


def plot_heatmaps(aligned: np.ndarray, unaligned: np.ndarray, labels: list[str],
                  null: Alignment, out: Path, title: str) -> Path:
    """Annotated heat maps before and after alignment on one colour scale (Figure 1 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    size = max(3.2, 0.62 * n + 1.6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.2, size + 0.9), constrained_layout=True)
    low = min(0.0, float(np.min(unaligned)), float(np.min(aligned)))
    image = None
    for ax, matrix, name, base in ((axes[0], unaligned, "before alignment", null.unaligned),
                                   (axes[1], aligned, "after alignment", null.overlap)):
        image = ax.imshow(matrix, cmap="viridis", vmin=low, vmax=1.0)
        digits = decimals(matrix, 2)
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                # Dark text on the light (high) end of viridis, light text elsewhere.
                colour = "black" if (value - low) / (1.0 - low or 1.0) > 0.6 else "white"
                ax.text(j, i, f"{value:.{digits}f}", ha="center", va="center", color=colour,
                        fontsize=(9 if n <= 8 else 7) - (digits > 3))
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        mean = float(np.mean(_off_diagonal(matrix))) if n > 1 else 1.0
        ax.set_title(f"{name}\nmean off-diagonal {mean:.{max(digits, 3)}f}; "
                     f"independent inits {base:.3f}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="overlap (mean layer cosine)")
    fig.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def pair_barriers(nets: list[Network], results: list[tuple[int, int, Alignment]], spec,
                  model_name: str, config: dict[str, Any], args: argparse.Namespace
                  ) -> list[dict[str, InterpolationPath]]:
    """Interpolation paths of every pair, aligned and as they are."""
    import torch

    from ..data import Split, load_dataset
    from ..models import build

    data_cfg = config.get("data", {})
    data = load_dataset(data_cfg.get("name", "mnist5k"), args.data_root or data_cfg.get("root"))
    train = Split(data.train.images[:args.bn_images], data.train.labels[:args.bn_images])
    val = Split(data.val.images[:args.eval_images], data.val.labels[:args.eval_images])
    scratch = build(model_name, num_classes=data.num_classes)
    paths = []
    for count, (i, j, result) in enumerate(results, 1):
        a = {k: torch.from_numpy(np.asarray(v)) for k, v in nets[i].state.items()}
        b = {k: torch.from_numpy(np.asarray(v)) for k, v in nets[j].state.items()}
        started = time.perf_counter()
        pair = {"aligned": interpolation_path(scratch, a, permute_state(b, spec, result.perms),
                                              train, val, points=args.points),
                "unaligned": interpolation_path(scratch, a, b, train, val, points=args.points)}
        paths.append(pair)
        if not args.quiet:
            print(f"parle-overlap: barrier {count}/{len(results)} {nets[i].label} ~ "
                  f"{nets[j].label}: loss barrier aligned {pair['aligned'].barrier_loss:.4f}, "
                  f"unaligned {pair['unaligned'].barrier_loss:.4f} "
                  f"({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``parle-overlap``; returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.labels and len(args.labels) != len(args.checkpoints):
        print(f"parle-overlap: --labels needs one label per checkpoint ({len(args.checkpoints)})",
              file=sys.stderr)
        return 2
    try:
        ckpts = [read_checkpoint(resolve_checkpoint(c)) for c in args.checkpoints]
        models = sorted({c.model for c in ckpts})
        if len(models) > 1:
            raise SpecError(f"checkpoints hold different models ({', '.join(models)}); "
                            "only networks of one model can be aligned")
        nets = collect_networks(ckpts, args.use, args.labels)
        if len(nets) < 2:
            raise SpecError(f"only {len(nets)} network(s) to compare; give more checkpoints "
                            "or --use all")
        model_name = models[0]
        _, spec = model_for_state(model_name, nets[0].state)
        shapes = {k: np.shape(v) for k, v in nets[0].state.items()}
        for net in nets[1:]:  # e.g. runs with different class counts cannot be compared
            if {k: np.shape(v) for k, v in net.state.items()} != shapes:
                raise SpecError(f"{net.label} ({net.checkpoint}) has other tensors or shapes "
                                f"than {nets[0].label}")
    except (OSError, ValueError, KeyError) as exc:  # SpecError is a ValueError
        print(f"parle-overlap: {exc}", file=sys.stderr)
        return 2

    labels = [net.label for net in nets]
    aligned, unaligned, results = overlap_matrices(nets, spec, max_sweeps=args.max_sweeps,
                                                   quiet=args.quiet)
    pairs = [{"a": nets[i].label, "b": nets[j].label, **r.to_dict()} for i, j, r in results]
    paths = None
    if args.barrier:
        try:
            paths = pair_barriers(nets, results, spec, model_name, ckpts[0].config, args)
        except (OSError, ValueError) as exc:  # DatasetMissing is an OSError
            print(f"parle-overlap: --barrier: {exc}", file=sys.stderr)
            return 2
        for pair, path in zip(pairs, paths):
            pair["barrier"] = {k: v.to_dict() for k, v in path.items()}
    classes = int(np.shape(nets[0].state[spec.layers[-1].weight])[0])
    null = null_baseline(model_name, classes, tuple(args.null_seeds), max_sweeps=args.max_sweeps)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"aligned_mean": float(np.mean(_off_diagonal(aligned))),
               "aligned_min": float(np.min(_off_diagonal(aligned))),
               "aligned_max": float(np.max(_off_diagonal(aligned))),
               "unaligned_mean": float(np.mean(_off_diagonal(unaligned))),
               "null_aligned": null.overlap, "null_unaligned": null.unaligned}
    if paths:
        for kind in ("aligned", "unaligned"):
            summary[f"barrier_loss_{kind}_mean"] = float(np.mean([p[kind].barrier_loss
                                                                  for p in paths]))
            summary[f"barrier_error_{kind}_mean"] = float(np.mean([p[kind].barrier_error
                                                                   for p in paths]))
    report = {
        "model": model_name,
        "definition": "mean over conv/linear layers of the cosine similarity of weights with "
                      "bias appended; aligned = after weight matching of hidden units",
        "checkpoints": [str(c.path) for c in ckpts],
        "networks": [{"label": n.label, "checkpoint": str(n.checkpoint), "which": n.which}
                     for n in nets],
        "layers": [layer.name for layer in spec.layers],
        "aligned": aligned.tolist(), "unaligned": unaligned.tolist(),
        "summary": summary, "pairs": pairs,
        "null_baseline": {"seeds": list(args.null_seeds), **null.to_dict()},
        "command": ["parle-overlap", *(sys.argv[1:] if argv is None else argv)],
    }
    (out / "overlap.json").write_text(json.dumps(report, indent=1) + "\n")
    title = args.title or f"{model_name}: permutation-invariant overlap"
    png = plot_heatmaps(aligned, unaligned, labels, null, out / "overlap.png", title)

    print(f"{model_name}: overlap after alignment (mean layer cosine)")
    print(format_matrix(aligned, labels))
    print("\nbefore alignment")
    print(format_matrix(unaligned, labels))
    d = max(decimals(aligned, 4), decimals(unaligned, 4))
    print(f"\noff-diagonal mean: aligned {summary['aligned_mean']:.{d}f} "
          f"(min {summary['aligned_min']:.{d}f}, max {summary['aligned_max']:.{d}f}), "
          f"unaligned {summary['unaligned_mean']:.{d}f}")
    print(f"null baseline (independent inits, seeds {args.null_seeds[0]} and "
          f"{args.null_seeds[1]}): aligned {null.overlap:.4f}, unaligned {null.unaligned:.4f}")
    if paths:
        barrier_png = plot_paths([f"{p['a']} ~ {p['b']}" for p in pairs], paths,
                                 out / "barrier.png", f"{model_name}: linear interpolation")
        print(f"loss barrier (mean over pairs): aligned "
              f"{summary['barrier_loss_aligned_mean']:.4f}, unaligned "
              f"{summary['barrier_loss_unaligned_mean']:.4f}; error barrier (points): aligned "
              f"{summary['barrier_error_aligned_mean']:.2f}, unaligned "
              f"{summary['barrier_error_unaligned_mean']:.2f}")
        print(f"wrote {barrier_png}")
    print(f"wrote {out / 'overlap.json'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
