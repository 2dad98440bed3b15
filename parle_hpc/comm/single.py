"""The size-1 communicator: one replica, no dependency, every collective is the identity."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from .base import Communicator


class Single(Communicator):
    """A world of one process."""

    name = "single"

    def __init__(self) -> None:
        super().__init__(rank=0, size=1)

    def _allreduce_mean_(self, flat: torch.Tensor) -> torch.Tensor:
        return flat

    def _allreduce_sum_(self, flat: torch.Tensor) -> torch.Tensor:
        return flat

    def _broadcast_(self, flat: torch.Tensor, root: int) -> torch.Tensor:
        if root != 0:
            raise ValueError(f"root {root} does not exist in a world of size 1")
        return flat

    def _broadcast_object(self, obj: Any, root: int) -> Any:
        if root != 0:
            raise ValueError(f"root {root} does not exist in a world of size 1")
        return obj

    def _barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
