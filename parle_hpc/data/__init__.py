"""Datasets held in memory as tensors, and per-replica minibatch streams.

Datasets are read through torchvision's classes (MNIST's IDX files, the CIFAR python
pickles, SVHN's ``.mat`` files), then kept as normalised float tensors so that drawing a
minibatch is one index operation; CIFAR minibatches are augmented on the fly (random
crops and flips) through :attr:`Dataset.augment`. ``mnist5k`` (5,000 real MNIST digits,
4,000 train / 1,000 test) ships inside the package for offline demos and tests.
``parle-data download NAME --root DIR`` stages the others (see :mod:`.sources`).
"""

from __future__ import annotations

from pathlib import Path

from .base import Dataset, DatasetMissing, DatasetUnreadable, Split
from .packaged import mnist5k_root
from .sampling import ReplicaBatches
from .sources import SOURCES

__all__ = ["DATASETS", "SOURCES", "Dataset", "DatasetMissing", "DatasetUnreadable",
           "ReplicaBatches", "Split", "load_dataset", "mnist5k_root"]

DATASETS = ("mnist5k", "mnist", "cifar10", "cifar100", "svhn")


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load dataset ``name`` from ``root`` into memory, normalised per channel.

    ``download=False`` and a missing dataset raise :class:`DatasetMissing` at once, with
    the path and the ``parle-data download`` command that stages it; files that are
    present but unreadable raise :class:`DatasetUnreadable`.
    """
    from . import readers  # torchvision is imported only when data is loaded

    if name == "mnist5k":
        return readers.load_mnist(Path(root) if root else mnist5k_root(), False, name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if root is None:
        raise DatasetMissing(f"dataset {name} needs data.root: the directory to hold it "
                             f"(stage it with: parle-data download {name} --root DIR)")
    root = Path(root).expanduser()
    if name == "mnist":
        return readers.load_mnist(root, download)
    if name in ("cifar10", "cifar100"):
        return readers.load_cifar(root, download, name)
    return readers.load_svhn(root, download)
