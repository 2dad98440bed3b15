"""Benchmark 6: time to align one pair of networks (parle_hpc.analysis.overlap.align).

Two kinds of pair per model (LeNet, All-CNN, WRN-16-4), their repetitions interleaved:

* ``independent``: two independently initialised networks (seeds 0 and 1), the pair the
  package's null baseline aligns; coordinate descent has no planted solution to find;
* ``permuted``: a network and a copy of it with every hidden layer randomly permuted and 1%
  noise added, where the alignment must recover the permutation (aligned overlap ~1).

Trained networks lie between the two. The paper's Figure 1 (six networks) is 15 pairs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .common import Context, interleaved, ratio, stats

MODELS = ("lenet", "allcnn", "wrn-16-4")
HEATMAP_PAIRS = 15  # six networks, as in the paper's Figure 1


def _pairs(name: str) -> tuple[Any, dict[str, tuple[dict, dict]], int]:
    from parle_hpc.analysis.overlap import permutation_spec, permute_state, random_permutations
    from parle_hpc.models import build

    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append({k: v.numpy().astype(np.float64) for k, v in build(name).state_dict().items()})
    model = build(name)
    spec = permutation_spec(name, model)
    P = sum(p.numel() for p in model.parameters())
    permuted = permute_state(states[0], spec, random_permutations(spec, seed=7))
    rng = np.random.default_rng(0)
    noisy = {k: v + 0.01 * np.std(v) * rng.standard_normal(v.shape) if v.dtype.kind == "f" and v.size > 1
             else v for k, v in permuted.items()}
    return spec, {"independent": (states[0], states[1]), "permuted": (states[0], noisy)}, P


def run(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001
    ctx.log("[overlap] permutation alignment time per pair")
    try:
        from parle_hpc.analysis.overlap import align
    except ImportError as exc:  # another change may still be landing it
        ctx.log(f"[overlap] skipped: parle_hpc.analysis.overlap is not importable ({exc})")
        return {"skipped": str(exc), "ratio": float("nan"), "ratio_name": "skipped"}
    models = ("lenet",) if ctx.quick else MODELS
    reps = 1 if ctx.quick else 3
    prepared = {name: _pairs(name) for name in models}
    outcome: dict[tuple[str, str], Any] = {}

    def candidate(name: str, kind: str):
        spec, pairs, _ = prepared[name]
        a, b = pairs[kind]

        def timed() -> float:
            start = time.perf_counter()
            outcome[name, kind] = align(a, b, spec)
            return time.perf_counter() - start
        return timed

    candidates = {f"{name}/{kind}": candidate(name, kind) for name in models
                  for kind in ("independent", "permuted")}
    samples = interleaved(candidates, reps, warmup=0)
    rows = []
    for name in models:
        _, _, P = prepared[name]
        for kind in ("independent", "permuted"):
            t = stats(samples[f"{name}/{kind}"])
            result = outcome[name, kind]
            rows.append({"model": name, "pair": kind, "P": P, "seconds": t,
                         "sweeps": result.sweeps, "overlap": result.overlap,
                         "unaligned": result.unaligned, "layers": len(result.per_layer),
                         "heatmap_seconds": HEATMAP_PAIRS * t["median"]})
            ctx.log(f"  {name:<9} {kind:<11} {t['median']:7.3f}s  {result.sweeps:>3} sweeps  "
                    f"overlap {result.overlap:.3f} (unaligned {result.unaligned:.3f})")
    by = {(r["model"], r["pair"]): r for r in rows}
    if "wrn-16-4" in models:
        head = ratio(by["wrn-16-4", "independent"]["seconds"]["median"],
                     by["lenet", "independent"]["seconds"]["median"])
        p_ratio = by["wrn-16-4", "independent"]["P"] / by["lenet", "independent"]["P"]
        ctx.log(f"[overlap] ratio WRN-16-4 / LeNet time per independent pair: {head:.1f}x "
                f"(parameters {p_ratio:.1f}x)")
        name = "WRN-16-4 / LeNet alignment time per independent pair"
    else:
        head = ratio(by["lenet", "independent"]["seconds"]["median"],
                     by["lenet", "permuted"]["seconds"]["median"])
        ctx.log(f"[overlap] ratio LeNet independent / permuted pair time: {head:.1f}x")
        name = "LeNet alignment time, independent / permuted pair"
    return {"rows": rows, "reps": reps, "ratio": head, "ratio_name": name}
