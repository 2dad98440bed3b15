"""Evaluation of the reference model, with its BN statistics re-estimated.

Work is split over ranks: each rank re-estimates BN statistics on its share of the
training data (the running means/variances are then averaged: with cumulative averaging
that is the average over all batches) and evaluates its share of the validation set;
sums are combined with one small allreduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


def float_buffers(model: nn.Module) -> list[torch.Tensor]:
    """BN running statistics (floating-point buffers), in ``named_buffers`` order."""
    return [b for _, b in model.named_buffers() if b.is_floating_point()]


def _shard(n: int, rank: int, size: int) -> slice:
    per = -(-n // size)
    return slice(rank * per, min(n, (rank + 1) * per))


@torch.no_grad()
def recompute_bn(model: nn.Module, data: Split, comm, batch_size: int, device) -> None:
    """One pass over (this rank's share of) ``data`` in train mode with dropout off."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d | nn.Dropout1d | nn.AlphaDropout):
            m.eval()
    part = _shard(len(data), comm.rank, comm.size)
    for start in range(part.start, part.stop, batch_size):
        stop = min(start + batch_size, part.stop)
        if stop - start < 2:  # BN cannot normalise a batch of one
            continue
        model(data.images[start:stop].to(device, non_blocking=True))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    average_buffers(model, comm)


def average_buffers(model: nn.Module, comm) -> None:
    """Average the floating-point buffers (BN statistics) over ranks, one collective."""
    buffers = float_buffers(model)
    if not buffers or comm.size == 1:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    comm.allreduce_mean_(flat)
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, comm, batch_size: int, device) -> dict[str, float]:
    """Loss and error (%) of ``model`` on ``data``, split over ranks, summed by allreduce."""
    model.eval()
    part = _shard(len(data), comm.rank, comm.size)
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(part.start, part.stop, batch_size):
        stop = min(start + batch_size, part.stop)
        x = data.images[start:stop].to(device, non_blocking=True)
        y = data.labels[start:stop].to(device, non_blocking=True)
        out = model(x)
        totals[0] += float(F.cross_entropy(out, y, reduction="sum"))
        totals[1] += float((out.argmax(1) != y).sum())
        totals[2] += stop - start
    comm.allreduce_sum_(totals)
    return {"loss": float(totals[0] / totals[2]), "error": float(100.0 * totals[1] / totals[2])}
