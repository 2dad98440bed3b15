"""Benchmark 1: optimizer work of one Parle step vs torch.optim.SGD, against the memory limit.

Only the optimizer is timed (gradients are filled once, no forward/backward). Three
optimizers over identical copies of the same model's parameters, stepped in turn:

* ``torch.optim.SGD(momentum=0.9, nesterov=True, foreach=True)`` (the model's weight decay);
* Parle with ``L`` so large that every step is an inner step: the inner-step time;
* Parle with ``L = 1``: every step is an inner step *and* an outer step (the L-th
  minibatch of an outer step). The outer step is the difference of the two medians.

Parle gets the size-1 :class:`~parle_hpc.comm.Single` communicator, whose allreduce is the
identity: this measures the outer step's arithmetic, not communication (benchmark 2 does
that). All three are element-wise vector updates, so they are memory-bound: their floor is
the bytes they must move divided by the machine's copy bandwidth, measured here too.

Every timed step starts from a cold cache (a 64 MiB buffer, twice the L3 here, is
rewritten untimed just before it): otherwise whichever optimizer's vectors happen to be in
cache wins, and the floor would not be defined. One intra-op thread: on a shared 2-core
machine a second thread mostly adds waits for the busier core.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from .common import Context, interleaved, ratio, stats

MODELS = ("lenet", "wrn-16-4")
L_AMORTISED = 25  # the paper's L: the per-minibatch cost is inner + outer / L
BYTES = 4         # float32

# P-length vectors each update reads plus writes, per step.
# "minimum": each vector of the update equations read once and written once (a fused kernel):
#   SGD:         read p, g, buf;            write buf, p                        = 5
#   Parle inner: read g, y, x, v, z;        write v, y, z                       = 8
#   Parle outer: read z, write r (sync-1 buffer); read x, z, r, u;
#                write u, x, y, z, xbar (sync-2 buffer)                        = 11
# "implemented": one read per input and one write per output of every tensor kernel the
# code launches (torch 2.14 _multi_tensor_sgd; parle_hpc/optim/parle.py):
#   SGD: [grads + wd*p: 3] + buf*=mu: 2 + buf+=g: 3 + g+=mu*buf: 3 + p-=lr*g: 3 = 11 (+3)
#   inner: g = grad + (wd + gamma) y: 3 + g -= gamma x: 3 + momentum: 8 + y -= lr g: 3
#          + z.lerp_(y): 3                                                     = 20
#   outer: g=z: 2 + four ops for (x-z)+rho(x-r): 11 + momentum: 8 + x-=: 3 + y=x, z=x,
#          ref=x: 6                                                              = 30
MIN_VECTORS = {"sgd": 5, "parle_inner": 8, "parle_outer": 11}


def implemented_vectors(weight_decay: float) -> dict[str, int]:
    wd = 3 if weight_decay else 0
    return {"sgd": 11 + wd, "parle_inner": 20, "parle_outer": 30}


def copy_bandwidth(numel: int, reps: int) -> dict[str, Any]:
    """Bytes per second of ``dst.copy_(src)`` (read + write) for float32 vectors of ``numel``."""
    src = torch.randn(numel)
    dst = torch.empty_like(src)
    t = stats(interleaved({"copy": lambda: dst.copy_(src)}, reps, warmup=2)["copy"])
    return {"numel": numel, "bytes_moved": 2 * numel * BYTES, "seconds": t,
            "bytes_per_s": 2 * numel * BYTES / t["median"]}


class _ColdCache:
    """Evicts the last-level cache by rewriting a buffer larger than it."""

    def __init__(self, nbytes: int = 64 * 2**20) -> None:
        self._buffer = torch.empty(nbytes // BYTES)
        self._value = 0.0

    def flush(self) -> None:
        self._value += 1.0
        self._buffer.fill_(self._value)

    def timed(self, step, setup=None):
        """``step`` as a candidate for :func:`interleaved` that times only itself, cold."""
        def candidate() -> float:
            if setup is not None:
                setup()
            self.flush()
            start = time.perf_counter()
            step()
            return time.perf_counter() - start
        return candidate


def _optimizers(name: str) -> tuple[int, float, dict[str, Any]]:
    """(P, weight decay, {label: step function}) over three identical copies of ``name``."""
    from parle_hpc.comm import Single
    from parle_hpc.models import build, default_weight_decay
    from parle_hpc.optim import Parle

    torch.manual_seed(0)
    base = build(name)
    wd = default_weight_decay(name)
    models = [copy.deepcopy(base) for _ in range(3)]
    P = sum(p.numel() for p in base.parameters())
    grads = [torch.randn_like(p) for p in base.parameters()]

    sgd_params = list(models[0].parameters())
    sgd = torch.optim.SGD(sgd_params, lr=0.01, momentum=0.9, nesterov=True, foreach=True,
                          weight_decay=wd)

    def restore_sgd_grads() -> None:
        # torch's foreach Nesterov adds mu*buf into p.grad in place: restore it untimed, or
        # the "gradient" would grow without bound over the repetitions.
        for p, g in zip(sgd_params, grads):
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)

    def parle(model: torch.nn.Module, L: int) -> Parle:
        opt = Parle(model.parameters(), comm=Single(), lr=0.01, L=L, batches_per_epoch=31,
                    weight_decay=wd)
        with torch.no_grad():  # the gradients are views of Parle's flat buffer: fill once
            for p, g in zip(model.parameters(), grads):
                p.grad.copy_(g)
        return opt

    inner = parle(models[1], 10**9)  # the outer step never comes
    every = parle(models[2], 1)      # every step ends an outer step
    cold = _ColdCache()
    return P, wd, {"sgd": cold.timed(sgd.step, restore_sgd_grads),
                   "parle_inner": cold.timed(inner.step),
                   "parle_inner_plus_outer": cold.timed(every.step)}


def measure(name: str, reps: int, bandwidth: float) -> dict[str, Any]:
    """Medians of the three steps of model ``name``; the floor is the minimum bytes over
    ``bandwidth`` (bytes/s of a large copy: every step starts with its vectors in DRAM)."""
    P, wd, steps = _optimizers(name)
    times = {k: stats(v) for k, v in interleaved(steps, reps, warmup=3).items()}
    sgd = times["sgd"]["median"]
    inner = times["parle_inner"]["median"]
    outer = times["parle_inner_plus_outer"]["median"] - inner
    impl = implemented_vectors(wd)
    rows: dict[str, dict[str, Any]] = {}
    for key, seconds in (("sgd", sgd), ("parle_inner", inner), ("parle_outer", outer)):
        nbytes = MIN_VECTORS[key] * P * BYTES
        limit = nbytes / bandwidth
        rows[key] = {"seconds": seconds, "min_bytes": nbytes,
                     "implemented_bytes": impl[key] * P * BYTES, "limit_seconds": limit,
                     "x_limit": ratio(seconds, limit), "x_sgd": ratio(seconds, sgd),
                     "bytes_x_sgd": MIN_VECTORS[key] / MIN_VECTORS["sgd"],
                     "implemented_bytes_x_sgd": impl[key] / impl["sgd"]}
    per_minibatch = inner + outer / L_AMORTISED
    return {"model": name, "P": P, "weight_decay": wd, "times": times, "rows": rows,
            "amortised": {"L": L_AMORTISED, "seconds": per_minibatch,
                          "x_sgd": ratio(per_minibatch, sgd),
                          "bytes_x_sgd": (MIN_VECTORS["parle_inner"]
                                          + MIN_VECTORS["parle_outer"] / L_AMORTISED)
                          / MIN_VECTORS["sgd"]}}


def run(ctx: Context) -> dict[str, Any]:
    ctx.log("[optimizer] optimizer work per step: Parle (Single communicator) vs torch SGD")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: Context) -> dict[str, Any]:
    big = 256 * 2**20 // BYTES  # 8x the L3: a DRAM-to-DRAM copy
    large = copy_bandwidth(big, 5 if ctx.quick else 20)
    ctx.log(f"  copy bandwidth, {big * BYTES / 2**20:.0f} MiB tensor: "
            f"{large['bytes_per_s'] / 1e9:.2f} GB/s (read + write)")
    models = {}
    for name in MODELS:
        reps = (15 if ctx.quick else 150) if name == "lenet" else (5 if ctx.quick else 40)
        r = measure(name, reps, large["bytes_per_s"])
        models[name] = r
        for key in ("sgd", "parle_inner", "parle_outer"):
            row = r["rows"][key]
            ctx.log(f"  {name:<9} {key:<12} {row['seconds'] * 1e3:8.3f} ms  "
                    f"{row['min_bytes'] / 2**20:7.1f} MiB min  "
                    f"{row['x_limit']:5.1f}x limit  {row['x_sgd']:5.2f}x SGD")
    headline = {name: r["rows"]["parle_inner"]["x_sgd"] for name, r in models.items()}
    text = ", ".join(f"{n} {v:.2f}x" for n, v in headline.items())
    ctx.log(f"[optimizer] ratio Parle inner step / SGD step: {text} "
            f"(memory-bound floor {MIN_VECTORS['parle_inner'] / MIN_VECTORS['sgd']:.1f}x)")
    return {"copy_bandwidth": large, "threads": 1, "models": models,
            "ratio": headline["wrn-16-4"], "ratio_name": "Parle inner step / SGD step (WRN-16-4)",
            "ratios": headline}
