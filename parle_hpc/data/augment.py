"""Minibatch augmentation on tensors, vectorised over the batch and driven by a generator.

Drawing every random number from the replica's ``torch.Generator`` makes a run
reproducible (and resumable: the generator's state is checkpointed with the sampler).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator,
                     padding: int = 4) -> torch.Tensor:
    """Random ``H x W`` crops of the images zero-padded by ``padding`` pixels, each mirrored
    left-right with probability 1/2 (the standard CIFAR augmentation).

    ``images`` is (N, C, H, W), already normalised, so the zero padding is the mean colour.
    All crops and flips are one gather; the result is a new contiguous tensor.
    """
    n, _, h, w = images.shape
    draw = {"generator": generator, "device": generator.device}
    dy = torch.randint(0, 2 * padding + 1, (n,), **draw).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), **draw).to(images.device)
    flip = torch.randint(0, 2, (n,), **draw).to(images.device).bool()
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=images.device)            # (N, H)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]   # (N, W), mirrored crop
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indices around a slice: the result is (N, H, W, C).
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
