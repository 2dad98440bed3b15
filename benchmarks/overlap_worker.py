"""One process of benchmark 6: time ``align`` on two kinds of pair per model, once each.

    OMP_NUM_THREADS=1 python -m benchmarks.overlap_worker --models lenet,allcnn --out F.json

A process, not a function call, because the number of BLAS/OpenMP threads that NumPy and
torch use is fixed when they are imported: the driver starts one worker per thread setting
and alternates them (:mod:`benchmarks.overlap_time`).

Pairs per model: ``independent`` (two independently initialised networks, seeds 0 and 1:
the null baseline's pair, no planted solution) and ``permuted`` (a network and a copy of it
with every hidden layer randomly permuted and 1% noise added: the permutation must be found).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def pairs(name: str) -> tuple[Any, dict[str, tuple[dict, dict]], int]:
    """(spec, {kind: (a, b)}, parameter count) for model ``name``."""
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
    noisy = {k: v + 0.01 * np.std(v) * rng.standard_normal(v.shape)
             if v.dtype.kind == "f" and v.size > 1 else v for k, v in permuted.items()}
    return spec, {"independent": (states[0], states[1]), "permuted": (states[0], noisy)}, P


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overlap_worker")
    p.add_argument("--models", default="lenet")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from parle_hpc.analysis.overlap import align

    prepared = {name: pairs(name) for name in args.models.split(",")}
    spec, kinds, _ = prepared[next(iter(prepared))]
    align(*kinds["permuted"], spec)  # untimed: first-call costs (SciPy, allocator) out of the way
    rows = []
    for name, (spec, kinds, P) in prepared.items():
        for kind, (a, b) in kinds.items():
            start = time.perf_counter()
            result = align(a, b, spec)
            rows.append({"model": name, "pair": kind, "P": P, "seconds": time.perf_counter() - start,
                         "sweeps": result.sweeps, "overlap": result.overlap,
                         "unaligned": result.unaligned, "layers": len(result.per_layer)})
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    Path(args.out).write_text(json.dumps({"torch_threads": torch.get_num_threads(),
                                          "env": threads, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
