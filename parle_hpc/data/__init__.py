"""Datasets held in memory as tensors, and per-replica minibatch streams.

Datasets are read through torchvision's classes (``torchvision.datasets.MNIST`` reads the
raw IDX files), then kept as normalised tensors so that drawing a minibatch is one index
operation. ``mnist5k`` (5,000 real MNIST digits, 4,000 train / 1,000 test) ships inside
the package for offline demos and tests.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .sampling import ReplicaBatches

__all__ = ["DATASETS", "Dataset", "DatasetMissing", "ReplicaBatches", "Split", "load_dataset",
           "mnist5k_root"]

DATASETS = ("mnist5k", "mnist")
_PACKAGED = Path(__file__).with_name("mnist5k")
_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081


class DatasetMissing(FileNotFoundError):
    """A dataset is not on disk and downloading was not allowed."""


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


def _cache_dir() -> Path:
    base = os.environ.get("PARLE_HPC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "parle_hpc")
    return Path(base)


def mnist5k_root(cache: Path | None = None) -> Path:
    """Unpack the packaged mnist5k digits (once, checksummed) and return a torchvision root.

    Safe when several ranks call it at once: each file is written to a temporary name and
    renamed into place.
    """
    root = (cache or _cache_dir()) / "mnist5k"
    raw = root / "MNIST" / "raw"
    expected = dict(line.split()[::-1] for line in
                    (_PACKAGED / "SHA256SUMS").read_text().splitlines() if line.strip())
    raw.mkdir(parents=True, exist_ok=True)
    for name, digest in expected.items():
        target = raw / name
        if target.is_file() and target.stat().st_size > 0 and _sha256(target) == digest:
            continue
        data = gzip.decompress((_PACKAGED / f"{name}.gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"packaged mnist5k file {name} is corrupt (checksum mismatch)")
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mnist(root: Path, download: bool, name: str) -> Dataset:
    from torchvision.datasets import MNIST

    splits = []
    for train in (True, False):
        try:
            ds = MNIST(root=str(root), train=train, download=download)
        except RuntimeError as exc:
            if "not found" not in str(exc).lower():
                raise
            raise DatasetMissing(
                f"dataset {name} not found under {root / 'MNIST' / 'raw'}; stage it on a "
                f"machine with internet access (python -c \"import torchvision; "
                f"torchvision.datasets.MNIST('{root}', download=True)\") or set "
                f"data.download=true") from None
        images = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
        images.sub_(_MNIST_MEAN).div_(_MNIST_STD)
        splits.append(Split(images.contiguous(), ds.targets.to(torch.int64)))
    return Dataset(name, splits[0], splits[1], num_classes=10)


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load dataset ``name`` into memory (normalised as in the paper's code)."""
    if name == "mnist5k":
        return _mnist(Path(root) if root else mnist5k_root(), False, name)
    if name == "mnist":
        if root is None:
            raise DatasetMissing("data.root must name the directory that holds MNIST/raw/")
        return _mnist(Path(root), download, name)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
