"""Data-parallel SGD: the baseline of the paper's wall-clock claim.

One model replicated on every rank; each rank computes the gradient of its share of the
minibatch, the gradients are averaged by **one** allreduce of the flat gradient buffer
every minibatch, and every rank applies the same Nesterov-SGD update (torch.optim.SGD's
rule), so the replicas stay identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .flat import FlatParams, nesterov_momentum_

__all__ = ["DataParallelSGD"]


class DataParallelSGD(torch.optim.Optimizer):
    """SGD with gradients averaged over ``comm`` every step.

    Construction broadcasts rank 0's weights (one collective), so all ranks start equal.
    Exposes the same read-outs as :class:`~parle_hpc.optim.Parle` (``reference()``,
    ``synced``, ``couplings()``, ...) so the training loop treats both alike.
    """

    def __init__(self, params: Iterable[torch.Tensor], *, comm=None, lr: float,
                 momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"invalid DataParallelSGD argument lr={lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"invalid DataParallelSGD argument momentum={momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"invalid DataParallelSGD argument weight_decay={weight_decay!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))
        if len(self.param_groups) != 1:
            raise ValueError("DataParallelSGD takes one parameter group")
        if comm is None:
            from ..comm.single import Single
            comm = Single()
        self.comm = comm
        self._flat_params = FlatParams(list(self.param_groups[0]["params"]), "DataParallelSGD")
        self._momentum_buffer = torch.zeros_like(self._flat_params.flat)
        self._work = torch.empty_like(self._flat_params.flat)
        self._steps = 0
        self.synced = False
        self.comm.broadcast_(self._flat_params.flat, root=0)  # identical replicas from the start

    @torch.no_grad()
    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - kept for the API
        self._flat_params.zero_grad()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        fp = self._flat_params
        fp.gather_grads()
        group = self.param_groups[0]
        self.comm.allreduce_mean_(fp.grad)  # the one collective of the step
        g = self._work
        g.copy_(fp.grad)
        if group["weight_decay"]:
            g.add_(fp.flat, alpha=group["weight_decay"])
        nesterov_momentum_(g, self._momentum_buffer, group["momentum"], group["nesterov"])
        fp.flat.add_(g, alpha=-group["lr"])
        self._steps += 1
        self.synced = True
        return loss

    # read-outs shared with Parle -------------------------------------------------------
    @property
    def flat_params(self) -> torch.Tensor:
        return self._flat_params.flat

    @property
    def reference_flat(self) -> torch.Tensor:
        return self._flat_params.flat  # every rank holds the same model

    def reference(self) -> list[torch.Tensor]:
        return self._flat_params.unflatten(self._flat_params.flat)

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def outer_step(self) -> int:
        return self._steps

    def couplings(self, t: int | None = None) -> tuple[float, float]:  # noqa: ARG002
        return 0.0, 0.0

    def distance_to_reference(self) -> float:
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"format": "dp-sgd-optimizer", "version": 1, "param_groups": [group],
                "buffers": {"momentum": self._momentum_buffer.clone()},
                "counters": {"steps": self._steps}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("format") != "dp-sgd-optimizer":
            raise ValueError("not a DataParallelSGD state_dict")
        self._momentum_buffer.copy_(state_dict["buffers"]["momentum"].reshape(-1))
        self._steps = int(state_dict["counters"]["steps"])
        saved = state_dict["param_groups"][0]
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})
