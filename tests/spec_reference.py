"""An independent, serial evaluation of the Parle equations (docs/parle-algorithm.md).

Written without the package's optimizer: plain lists of per-parameter tensors, one list
per replica, the equations line by line. Tests compare the distributed optimizer to it.
Also holds the tiny deterministic problem both sides train on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIM_IN, DIM_HID, DIM_OUT, BATCH = 4, 6, 3, 8


def init_params(replica: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + replica)
    return [torch.randn(DIM_HID, DIM_IN, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(DIM_HID, generator=g, dtype=torch.float64) * 0.1,
            torch.randn(DIM_OUT, DIM_HID, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(DIM_OUT, generator=g, dtype=torch.float64) * 0.1]


def make_batch(replica: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10_000 * replica + k)
    x = torch.randn(BATCH, DIM_IN, generator=g, dtype=torch.float64)
    y = torch.randint(0, DIM_OUT, (BATCH,), generator=g)
    return x, y


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = params
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


class TinyNet(torch.nn.Module):
    """``forward`` as a module, for the optimizer under test."""

    def __init__(self, replica: int) -> None:
        super().__init__()
        self.w1, self.b1, self.w2, self.b2 = (torch.nn.Parameter(p.clone())
                                              for p in init_params(replica))

    def forward(self, x):
        return forward([self.w1, self.b1, self.w2, self.b2], x)


def grad(params: list[torch.Tensor], replica: int, k: int) -> list[torch.Tensor]:
    ps = [p.detach().clone().requires_grad_(True) for p in params]
    x, y = make_batch(replica, k)
    loss = F.cross_entropy(forward(ps, x), y)
    return list(torch.autograd.grad(loss, ps))


def coupling(c0: float, c_max: float, scoping: float, B: int, t: int) -> float:
    s = scoping / B
    return min(c0 * (1 + s) ** t, c_max)


def serial_parle(n: int, *, L: int, outer_steps: int, lr: float, inner_lr: float, gamma0: float,
                 gamma_max: float, rho0: float, rho_max: float, scoping: float, B: int,
                 alpha: float, mu: float, wd: float):
    """Run the spec on ``n`` replicas serially; returns (anchors x_a, iterates y_a, xbar)."""
    x = [init_params(a) for a in range(n)]
    y = [[p.clone() for p in xa] for xa in x]
    z = [[p.clone() for p in xa] for xa in x]
    v = [[torch.zeros_like(p) for p in xa] for xa in x]
    u = [[torch.zeros_like(p) for p in xa] for xa in x]
    k = [0] * n  # minibatch counter of each replica
    xbar = None
    for t in range(1, outer_steps + 1):
        gamma = coupling(gamma0, gamma_max, scoping, B, t)
        rho = coupling(rho0, rho_max, scoping, B, t)
        if L == 0:
            r = [sum(x[a][i] for a in range(n)) / n for i in range(4)]          # sync 1
            for a in range(n):
                z[a] = [p.clone() for p in x[a]]
                gr = grad(x[a], a, k[a])
                k[a] += 1
                for i in range(4):
                    g = gr[i] + wd * x[a][i] + rho * (x[a][i] - r[i])
                    u[a][i] = mu * u[a][i] + g
                    g = g + mu * u[a][i]
                    x[a][i] = x[a][i] - lr * g
                y[a] = [p.clone() for p in x[a]]
        else:
            for a in range(n):
                z[a] = [p.clone() for p in x[a]]
                for _ in range(L):
                    gr = grad(y[a], a, k[a])
                    k[a] += 1
                    for i in range(4):
                        g = gr[i] + wd * y[a][i] + gamma * (y[a][i] - x[a][i])
                        v[a][i] = mu * v[a][i] + g
                        g = g + mu * v[a][i]
                        y[a][i] = y[a][i] - inner_lr * g
                        z[a][i] = alpha * z[a][i] + (1 - alpha) * y[a][i]
            r = [sum(z[a][i] for a in range(n)) / n for i in range(4)]          # sync 1
            for a in range(n):
                for i in range(4):
                    g = (x[a][i] - z[a][i]) + rho * (x[a][i] - r[i])
                    u[a][i] = mu * u[a][i] + g
                    g = g + mu * u[a][i]
                    x[a][i] = x[a][i] - lr * g
                y[a] = [p.clone() for p in x[a]]
        xbar = [sum(x[a][i] for a in range(n)) / n for i in range(4)]           # sync 2
    return x, y, xbar


# One setting for the multi-rank tests: scoping on, caps reached within the run.
SETTING = dict(lr=0.2, inner_lr=0.1, gamma0=0.1, gamma_max=0.13, rho0=1.0, rho_max=1.4,
               scoping=0.5, B=3, alpha=0.75, mu=0.9, wd=1e-3)
OUTER_STEPS = 6


def global_batch(k: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A global minibatch of ``size`` examples (divisible by 2 and 3) for data-parallel tests."""
    g = torch.Generator().manual_seed(77_000 + k)
    return (torch.randn(size, DIM_IN, generator=g, dtype=torch.float64),
            torch.randint(0, DIM_OUT, (size,), generator=g))
