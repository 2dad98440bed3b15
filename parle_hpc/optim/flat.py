"""Parameters and gradients in one contiguous buffer each (parameters become views).

Shared by :class:`~parle_hpc.optim.Parle` and the data-parallel SGD baseline, so that every
update is a few fused vector operations and every sync is one collective on one buffer.
"""

from __future__ import annotations

import torch


class FlatParams:
    """Moves ``params`` (same dtype and device) into ``self.flat`` and their gradients into
    ``self.grad``; parameter ``.data`` and ``.grad`` become views of those buffers."""

    def __init__(self, params: list[torch.Tensor], owner: str) -> None:
        if not params:
            raise ValueError(f"{owner} got no parameters")
        dtype, device = params[0].dtype, params[0].device
        for p in params:
            if p.dtype != dtype or p.device != device:
                raise ValueError("all parameters must share one dtype and device; found "
                                 f"{dtype}/{device} and {p.dtype}/{p.device}")
        self.params = params
        numel = sum(p.numel() for p in params)
        self.flat = torch.empty(numel, dtype=dtype, device=device)
        self.grad = torch.zeros(numel, dtype=dtype, device=device)
        self.slices: list[tuple[int, int]] = []
        offset = 0
        for p in params:
            n = p.numel()
            self.flat[offset:offset + n].copy_(p.detach().reshape(-1))
            self.slices.append((offset, n))
            offset += n
        self.bind()

    def bind(self) -> None:
        """Point every parameter's ``.data`` and ``.grad`` at its slice of the buffers."""
        for p, (offset, n) in zip(self.params, self.slices):
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)

    def gather_grads(self) -> None:
        """Make ``self.grad`` hold the current gradients.

        Fast path: the gradients are still views of the buffer. If a caller replaced them
        (``model.zero_grad(set_to_none=True)`` then ``backward``), copy them in and rebind.
        """
        rebind = False
        for p, (offset, n) in zip(self.params, self.slices):
            if p.data.data_ptr() != self.flat[offset:offset + n].data_ptr():
                raise RuntimeError("a parameter no longer lives in the optimizer's flat buffer "
                                   "(was .data reassigned?); copy weights in with "
                                   "param.copy_() instead")
            g = p.grad
            view = self.grad[offset:offset + n]
            if g is None:
                view.zero_()
                rebind = True
            elif g.data_ptr() != view.data_ptr():
                view.copy_(g.reshape(-1))
                rebind = True
        if rebind:
            self.bind()

    def zero_grad(self) -> None:
        self.grad.zero_()
        self.bind()

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` (same layout) as a list of tensors (copies) shaped like the parameters."""
        return [flat[o:o + n].view_as(p).clone() for p, (o, n) in zip(self.params, self.slices)]


def nesterov_momentum_(g: torch.Tensor, buf: torch.Tensor, momentum: float, nesterov: bool) -> None:
    """``buf = mu buf + g``, then ``g = g + mu buf`` (Nesterov) or ``g = buf``, in place
    (torch.optim.SGD's rule without dampening)."""
    if momentum == 0:
        return
    buf.mul_(momentum).add_(g)
    if nesterov:
        g.add_(buf, alpha=momentum)
    else:
        g.copy_(buf)
