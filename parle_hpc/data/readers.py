"""Readers: torchvision's dataset classes, converted once to normalised float tensors.

Integrity: torchvision's CIFAR and SVHN classes hash every file (MD5) each time they are
opened. Here the same classes are used with their checksums cleared, so opening checks
that the files are *present* and the readers (pickle, ``scipy.io.loadmat``) do the
reading; a truncated or corrupt file makes the reader fail, and that failure is
reported as :class:`DatasetUnreadable` with the fix. Checksums are verified once, when
the dataset is staged (``parle-data download``, torchvision's download code). This
saves hashing 2.6 GB (SVHN) on every rank at every start, and lets tests exercise the
real readers on small stand-in files written in the same formats.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from .augment import random_crop_flip
from .base import Dataset, DatasetUnreadable, Split
from .sources import SOURCES

# Per-channel mean and standard deviation of the training pixels (in [0, 1]): the usual values.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
_CHUNK = 8192  # images converted at a time: bounds the temporary memory of the conversion


def _present_only(files: list) -> list:
    return [[name, None] for name, _ in files]


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR-10 reader, checking presence instead of MD5 (module docstring)."""

    train_list = _present_only(datasets.CIFAR10.train_list)
    test_list = _present_only(datasets.CIFAR10.test_list)
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _CIFAR100(datasets.CIFAR100):
    """torchvision's CIFAR-100 reader, checking presence instead of MD5."""

    train_list = _present_only(datasets.CIFAR100.train_list)
    test_list = _present_only(datasets.CIFAR100.test_list)
    meta = {**datasets.CIFAR100.meta, "md5": None}


class _SVHN(datasets.SVHN):
    """torchvision's SVHN reader, checking presence instead of MD5."""

    split_list = {split: [url, filename, None]
                  for split, (url, filename, _) in datasets.SVHN.split_list.items()}


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images (N, C, H, W), any strides, to float32 ``(x / 255 - mean) / std``.

    Written into ``out`` (allocated when ``None``) chunk by chunk, so converting a large
    set needs no full-size temporary.
    """
    if out is None:
        out = torch.empty(images.shape, dtype=torch.float32)
    # On the 0..255 scale: (x - 255 mean) / (255 std) = (x / 255 - mean) / std.
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    for start in range(0, images.shape[0], _CHUNK):
        chunk = out[start:start + _CHUNK]
        chunk.copy_(images[start:start + _CHUNK])
        chunk.sub_(shift).div_(scale)
    return out


def _read(name: str, root: Path, reader):
    """Call ``reader()``; turn torchvision's and the file readers' errors into clear ones."""
    source = SOURCES[name]
    source.require(root)
    # How pickle (CIFAR), scipy.io.loadmat (SVHN) and the IDX reader (MNIST: a RuntimeError
    # on a short file) fail on truncated or corrupt files.
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, KeyError,
                                               RuntimeError, pickle.UnpicklingError)
    if name == "svhn":
        from scipy.io.matlab import MatReadError

        errors += (MatReadError,)
    try:
        return reader()
    except errors as exc:
        raise DatasetUnreadable(
            f"dataset {name} under {source.directory(root)} could not be read ({type(exc).__name__}: "
            f"{exc}); the files may be truncated or corrupt. Remove them and stage the dataset "
            f"again (checksums are verified):\n    {source.stage_command(root)}") from exc


def _stage_if_allowed(name: str, root: Path, download: bool) -> None:
    if download and SOURCES[name].missing(root):
        SOURCES[name].stage(root)


def load_mnist(root: Path, download: bool, name: str = "mnist") -> Dataset:
    """MNIST (or the packaged mnist5k) from ``root/MNIST/raw``; no augmentation."""
    if name == "mnist":
        _stage_if_allowed("mnist", root, download)
    mean, std = STATS["mnist"]
    splits = []
    for train in (True, False):
        ds = _read("mnist", root, lambda: datasets.MNIST(root=str(root), train=train))
        images = normalise(ds.data.unsqueeze(1), mean, std)
        splits.append(Split(images, ds.targets.to(torch.int64)))
    return Dataset(name, splits[0], splits[1], num_classes=10)


def load_cifar(root: Path, download: bool, name: str) -> Dataset:
    """CIFAR-10 or CIFAR-100; training minibatches get random crops (4-pixel padding) and flips."""
    _stage_if_allowed(name, root, download)
    cls, classes = (_CIFAR10, 10) if name == "cifar10" else (_CIFAR100, 100)
    mean, std = STATS[name]
    splits = []
    for train in (True, False):
        ds = _read(name, root, lambda: cls(str(root), train=train))
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # stored HWC
        splits.append(Split(normalise(images, mean, std),
                            torch.as_tensor(ds.targets, dtype=torch.int64)))
    return Dataset(name, splits[0], splits[1], num_classes=classes, augment=random_crop_flip)


def load_svhn(root: Path, download: bool) -> Dataset:
    """SVHN: train + extra for training, test for validation; no augmentation (as the paper)."""
    _stage_if_allowed("svhn", root, download)
    mean, std = STATS["svhn"]
    parts = {split: _read("svhn", root, lambda: _SVHN(str(root), split=split))
             for split in ("train", "extra", "test")}
    n_train = len(parts["train"]) + len(parts["extra"])
    # Preallocate the 600k-image training tensor and fill it split by split (no concat copy).
    train_images = torch.empty((n_train, 3, 32, 32), dtype=torch.float32)
    offset = 0
    for split in ("train", "extra"):
        data = parts[split].data  # (N, 3, 32, 32) uint8 view of the .mat array
        normalise(torch.from_numpy(data), mean, std, out=train_images[offset:offset + len(data)])
        offset += len(data)
        parts[split].data = None  # drop the uint8 array once converted (the extra split: 1.6 GB)
    train_labels = torch.from_numpy(np.concatenate([parts["train"].labels, parts["extra"].labels]))
    test = parts["test"]
    val = Split(normalise(torch.from_numpy(test.data), mean, std),
                torch.from_numpy(test.labels.astype(np.int64)))
    return Dataset("svhn", Split(train_images, train_labels.to(torch.int64)), val, num_classes=10)


__all__ = ["STATS", "load_cifar", "load_mnist", "load_svhn", "normalise"]
