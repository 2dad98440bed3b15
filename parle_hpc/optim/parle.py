"""The Parle optimizer: ``n`` replicas, ``L`` local Entropy-SGD steps, elastic coupling.

Pure tensor math. The optimizer never imports MPI, Horovod or torch.distributed: the
only communication is ``comm.allreduce_mean_`` on one contiguous buffer, given by the
caller (see :mod:`parle_hpc.comm`). The equations are those of the shared design note
``docs/parle-algorithm.md`` (the authors' research code for arXiv 1707.00424 v1):

Inner step (``L > 0``, once per minibatch, ``t`` advanced at the first inner step)::

    g = grad + wd * y + gamma_t * (y - x);  v = mu * v + g;  g = g + mu * v
    y = y - inner_lr * g;                   z = alpha * z + (1 - alpha) * y

Outer step (after the ``L``-th inner step)::

    r = mean_a z                          # sync 1: one allreduce
    g = (x - z) + rho_t * (x - r);  u = mu * u + g;  g = g + mu * u
    x = x - lr * g;  y = x;  z = x
    xbar = mean_a x                       # sync 2: one allreduce

``L == 0`` (Elastic-SGD / SGD): every step is an outer step with the gradient at ``x``::

    r = mean_a x;  g = grad + wd * x + rho_t * (x - r);  u = mu * u + g;  g = g + mu * u
    x = x - lr * g;  xbar = mean_a x

For ``L == 0`` sync 1 needs no collective of its own: ``x`` has not changed since the
previous sync 2, so ``mean_a x`` *is* the reference computed there (bit for bit). The
optimizer forms the initial reference with one allreduce at construction, so every
``L == 0`` step costs one allreduce and every ``L > 0`` outer step costs two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .flat import FlatParams, nesterov_momentum_
from .schedules import scoped, scoping_rate

__all__ = ["Parle"]

_STATE_BUFFERS = ("anchor", "average", "inner_momentum", "outer_momentum", "reference")


class Parle(torch.optim.Optimizer):
    """Parle (Chaudhari et al., 2017) for the replica held by this process.

    Use it like any optimizer: ``loss.backward(); opt.step()`` once per minibatch. The step
    that ends an outer step (every ``L``-th step; every step when ``L == 0``) performs the
    outer update and the syncs with the other replicas through ``comm``.

    The parameters are moved into one contiguous flat buffer (each parameter becomes a view
    of it) and so are their gradients, so every update is a handful of fused vector ops and
    every sync is one collective on one buffer. All parameters must share dtype and device.

    Args:
        params: the model's parameters (one parameter group).
        comm: a :class:`parle_hpc.comm.Communicator`; ``None`` means a single replica.
        lr: outer learning rate ``eta``; a schedule may change ``param_groups[0]["lr"]``.
        inner_lr: inner learning rate ``eta_in``; defaults to the initial ``lr`` and is
            never annealed (the spec's setting).
        L: inner steps per outer step; ``0`` gives Elastic-SGD (and SGD for one replica
            with ``rho0 = 0``).
        gamma0, gamma_max: local-entropy coupling, scoped as ``min(gamma0 (1+s)^t, gamma_max)``.
        rho0, rho_max: elastic coupling to the reference, scoped the same way.
        scoping: ``s = scoping / batches_per_epoch``.
        batches_per_epoch: ``B``, minibatches in one pass of one replica over its data.
        alpha: weight of the old average in ``z = alpha z + (1 - alpha) y``.
        momentum, nesterov: momentum ``mu`` of both loops (no dampening).
        weight_decay: ``wd``, applied to the gradient of the inner (or ``L == 0``) step.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        *,
        comm=None,
        lr: float,
        inner_lr: float | None = None,
        L: int = 25,
        gamma0: float = 0.01,
        gamma_max: float = 1.0,
        rho0: float = 1.0,
        rho_max: float = 10.0,
        scoping: float = 0.5,
        batches_per_epoch: int,
        alpha: float = 0.75,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
    ) -> None:
        _check("lr", lr, lr > 0)
        inner_lr = lr if inner_lr is None else inner_lr
        _check("inner_lr", inner_lr, inner_lr > 0)
        _check("L", L, isinstance(L, int) and L >= 0)
        for name, value in (("gamma0", gamma0), ("gamma_max", gamma_max), ("rho0", rho0),
                            ("rho_max", rho_max), ("scoping", scoping),
                            ("weight_decay", weight_decay)):
            _check(name, value, value >= 0 and math.isfinite(value))
        _check("batches_per_epoch", batches_per_epoch,
               isinstance(batches_per_epoch, int) and batches_per_epoch > 0)
        _check("alpha", alpha, 0 <= alpha < 1)
        _check("momentum", momentum, 0 <= momentum < 1)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        defaults = dict(lr=lr, inner_lr=inner_lr, L=L, gamma0=gamma0, gamma_max=gamma_max,
                        rho0=rho0, rho_max=rho_max, scoping=scoping,
                        batches_per_epoch=batches_per_epoch, alpha=alpha, momentum=momentum,
                        nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("Parle takes one parameter group (all parameters are coupled "
                             f"as one vector); got {len(self.param_groups)}")
        if comm is None:
            from ..comm.single import Single  # the size-1 communicator has no dependencies
            comm = Single()
        self.comm = comm

        self._params: list[torch.Tensor] = list(self.param_groups[0]["params"])
        # The flat buffer *is* the inner iterate y: parameters become views of it.
        self._flat_params = FlatParams(self._params, "Parle")
        self._flat, self._flat_grad = self._flat_params.flat, self._flat_params.grad

        self._buffers = {name: self._flat.clone() for name in ("anchor", "average", "reference")}
        self._buffers["inner_momentum"] = torch.zeros_like(self._flat)
        self._buffers["outer_momentum"] = torch.zeros_like(self._flat)
        self._work = torch.empty_like(self._flat)
        self._inner_step = 0   # inner steps taken in the current outer step (0..L-1)
        self._outer_step = 0   # the spec's t
        self._steps = 0        # minibatch steps taken by this replica
        self.synced = False    # whether the last step() ended with a sync
        self.comm.allreduce_mean_(self._buffers["reference"])  # initial reference, all ranks

    @torch.no_grad()
    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - kept for the API
        """Zero the flat gradient buffer in place (gradients stay views of it)."""
        self._flat_params.zero_grad()

    # ------------------------------------------------------------------ public read-outs
    @property
    def flat_params(self) -> torch.Tensor:
        """The contiguous buffer holding this replica's current weights (the iterate ``y``)."""
        return self._flat

    @property
    def reference_flat(self) -> torch.Tensor:
        """The reference ``xbar = mean_a x_a`` as one flat tensor (do not modify)."""
        return self._buffers["reference"]

    def reference(self) -> list[torch.Tensor]:
        """The reference weights as a list of tensors (copies) in parameter order."""
        return self._flat_params.unflatten(self._buffers["reference"])

    @property
    def outer_step(self) -> int:
        """The outer-step counter ``t`` (1 during the first outer step)."""
        return self._outer_step

    @property
    def steps(self) -> int:
        """Minibatch steps taken by this replica."""
        return self._steps

    def couplings(self, t: int | None = None) -> tuple[float, float]:
        """``(gamma_t, rho_t)`` at outer step ``t`` (default: the current one)."""
        g = self.param_groups[0]
        t = self._outer_step if t is None else t
        s = scoping_rate(g["scoping"], g["batches_per_epoch"])
        return scoped(g["gamma0"], g["gamma_max"], s, t), scoped(g["rho0"], g["rho_max"], s, t)

    def distance_to_reference(self) -> float:
        """``|x_a - xbar|``: Euclidean distance of this replica's anchor to the reference."""
        return float(torch.linalg.vector_norm(self._buffers["anchor"] - self._buffers["reference"]))

    # ------------------------------------------------------------------ the update
    @torch.no_grad()
    def step(self, closure=None):
        """One minibatch step; ends with the outer update and the syncs every ``L`` steps."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._flat_params.gather_grads()
        group = self.param_groups[0]
        if group["L"] == 0:
            self._elastic_step(group)
        else:
            self._local_entropy_step(group)
            if self._inner_step == group["L"]:
                self._outer_update(group)
        self._steps += 1
        return loss

    def _local_entropy_step(self, group: dict[str, Any]) -> None:
        self.synced = False
        if self._inner_step == 0:
            self._outer_step += 1
        gamma, _ = self.couplings()
        y = self._flat
        g = self._coupled_gradient(y, self._buffers["anchor"], gamma, group)
        self._momentum(g, self._buffers["inner_momentum"], group)
        y.add_(g, alpha=-group["inner_lr"])
        # z = alpha z + (1 - alpha) y, as one pass: z + (1 - alpha) (y - z)
        self._buffers["average"].lerp_(y, 1.0 - group["alpha"])
        self._inner_step += 1

    def _outer_update(self, group: dict[str, Any]) -> None:
        _, rho = self.couplings()
        x, z = self._buffers["anchor"], self._buffers["average"]
        g = self._work
        g.copy_(z)
        self.comm.allreduce_mean_(g)                    # sync 1: r = mean_a z_a
        g.sub_(x).mul_(-rho).add_(x).sub_(z)            # g = (x - z) + rho (x - r)
        self._finish_outer_step(g, group)
        self._inner_step = 0

    def _elastic_step(self, group: dict[str, Any]) -> None:
        self._outer_step += 1
        _, rho = self.couplings()
        # sync 1: r = mean_a x_a is the reference of the last sync 2 (x has not moved since)
        g = self._coupled_gradient(self._buffers["anchor"], self._buffers["reference"], rho, group)
        self._finish_outer_step(g, group)

    def _coupled_gradient(self, point: torch.Tensor, centre: torch.Tensor, coupling: float,
                          group: dict[str, Any]) -> torch.Tensor:
        """``grad + wd * point + coupling * (point - centre)`` in the work buffer.

        Computed as ``grad + (wd + coupling) point - coupling centre``: two passes over
        memory and no temporary (the step is memory-bound)."""
        g = self._work
        scale = group["weight_decay"] + coupling
        if scale:
            torch.add(self._flat_grad, point, alpha=scale, out=g)
        else:
            g.copy_(self._flat_grad)
        if coupling:
            g.sub_(centre, alpha=coupling)
        return g

    def _finish_outer_step(self, g: torch.Tensor, group: dict[str, Any]) -> None:
        """Outer momentum, ``x = x - lr g``, restart ``y = z = x``, then sync 2."""
        x = self._buffers["anchor"]
        self._momentum(g, self._buffers["outer_momentum"], group)
        x.add_(g, alpha=-group["lr"])
        self._flat.copy_(x)                             # y = x
        self._buffers["average"].copy_(x)               # z = x for the next outer step
        self._sync_reference()                          # sync 2: xbar = mean_a x_a

    @staticmethod
    def _momentum(g: torch.Tensor, buf: torch.Tensor, group: dict[str, Any]) -> None:
        nesterov_momentum_(g, buf, group["momentum"], group["nesterov"])

    def _sync_reference(self) -> None:
        ref = self._buffers["reference"]
        ref.copy_(self._buffers["anchor"])
        self.comm.allreduce_mean_(ref)
        self.synced = True

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a restored optimizer needs to continue exactly (weights excluded:
        they belong to the model's ``state_dict``). Tensors are copies."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "format": "parle-optimizer",
            "version": 1,
            "param_groups": [group],
            "buffers": {name: self._buffers[name].clone() for name in _STATE_BUFFERS},
            "counters": {"inner_step": self._inner_step, "outer_step": self._outer_step,
                         "steps": self._steps},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (of an optimizer over the same parameters)."""
        if state_dict.get("format") != "parle-optimizer":
            raise ValueError("not a Parle optimizer state_dict (missing format='parle-optimizer')")
        buffers = state_dict["buffers"]
        for name in _STATE_BUFFERS:
            src = buffers[name]
            if src.numel() != self._flat.numel():
                raise ValueError(f"state buffer {name!r} has {src.numel()} elements; this "
                                 f"optimizer has {self._flat.numel()} parameters")
            self._buffers[name].copy_(src.reshape(-1))
        counters = state_dict["counters"]
        self._inner_step = int(counters["inner_step"])
        self._outer_step = int(counters["outer_step"])
        self._steps = int(counters["steps"])
        saved = state_dict["param_groups"][0]
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})


def _check(name: str, value: Any, ok: bool) -> None:
    if not ok:
        raise ValueError(f"invalid Parle argument {name}={value!r}")
