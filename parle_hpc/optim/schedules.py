"""Scoping and learning-rate schedules (pure functions, no state).

See docs/parle-algorithm.md in the shared design notes: the couplings grow as
``c_t = min(c0 * (1 + s)**t, c_max)`` with ``s = scoping / B``, and the outer
learning rate follows a piecewise-constant schedule by epoch.
"""

from __future__ import annotations

from collections.abc import Sequence


def scoping_rate(scoping: float, batches_per_epoch: int) -> float:
    """Per-outer-step growth ``s = scoping / B`` (``B`` = minibatches per epoch of one replica)."""
    if batches_per_epoch <= 0:
        raise ValueError(f"batches_per_epoch must be positive, got {batches_per_epoch}")
    return scoping / batches_per_epoch


def scoped(value0: float, value_max: float, s: float, t: int) -> float:
    """``min(value0 * (1 + s)**t, value_max)``: a coupling at outer step ``t`` (t = 1, 2, ...)."""
    return min(value0 * (1.0 + s) ** t, value_max)


def lr_at_epoch(schedule: Sequence[Sequence[float]], epoch: int) -> float:
    """Learning rate for 0-based ``epoch`` from ``[[until_epoch, lr], ...]``.

    ``[[1, 0.1], [2, 0.02], [3, 0.004], [5, 0.001]]`` means 0.1 in epoch 0, 0.02 in epoch 1,
    0.004 in epoch 2 and 0.001 in epochs 3 and 4; past the last bound the last rate is kept.
    """
    if not schedule:
        raise ValueError("learning-rate schedule is empty")
    for until, lr in schedule:
        if epoch < until:
            return float(lr)
    return float(schedule[-1][1])


def validate_lr_schedule(schedule: Sequence[Sequence[float]]) -> None:
    """Raise ``ValueError`` unless ``schedule`` is ``[[until_epoch, lr], ...]`` with rising bounds."""
    if not schedule:
        raise ValueError("must hold at least one [until_epoch, lr] pair")
    previous = 0
    for i, entry in enumerate(schedule):
        if len(entry) != 2:
            raise ValueError(f"entry {i} is {entry!r}; expected [until_epoch, lr]")
        until, lr = entry
        for value in entry:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"entry {i}: {value!r} is not a number (YAML reads 1e12 as "
                                 "text: write 1.0e+12)")
        if int(until) != until or until <= previous:
            raise ValueError(f"entry {i}: epoch bounds must be rising integers, got {until}")
        if not lr > 0:
            raise ValueError(f"entry {i}: learning rate must be positive, got {lr}")
        previous = until
