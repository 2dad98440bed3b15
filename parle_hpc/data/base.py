"""The in-memory dataset types shared by the readers and the training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


class DatasetMissing(FileNotFoundError):
    """A dataset is not on disk and downloading was not allowed."""


class DatasetUnreadable(RuntimeError):
    """A dataset's files are present but cannot be read (truncated or corrupt)."""


@dataclass
class Split:
    """One split as tensors: ``images`` (N, C, H, W) float, ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A dataset in memory. ``augment(images, generator)`` (optional) transforms a training
    minibatch on the fly, e.g. random crops and flips, drawing from the replica's generator."""

    name: str
    train: Split
    val: Split
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
