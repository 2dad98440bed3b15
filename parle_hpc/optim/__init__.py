"""The algorithm: pure tensor math, no I/O and no MPI imports."""

from .baselines import DataParallelSGD
from .parle import Parle
from .schedules import lr_at_epoch, scoped, scoping_rate

__all__ = ["DataParallelSGD", "Parle", "lr_at_epoch", "scoped", "scoping_rate"]
