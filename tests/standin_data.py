"""Tiny stand-in datasets written in the real on-disk formats, so that torchvision's own
readers (IDX, the CIFAR python pickles, SVHN's MATLAB files) are exercised offline.

Each writer returns the uint8 images (N, C, H, W) and int64 labels it wrote, in the order
the package should read them back.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _images(rng: np.random.Generator, n: int, c: int, h: int = 32, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def write_mnist(root: Path, n_train: int = 16, n_test: int = 16, seed: int = 0) -> dict:
    """``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = _images(rng, n, 1, 28, 28)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        # IDX: big-endian magic (0x08 = unsigned byte, then the number of dimensions), sizes.
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x0801, n) + labels.tobytes())
        out[prefix] = (images, labels.astype(np.int64))
    return {"train": out["train"], "val": out["t10k"]}


def _pickle(path: Path, obj: dict) -> None:
    # Protocol 2, as the original (Python 2 cPickle) files; torchvision reads with latin1.
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 16, seed: int = 1) -> dict:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for k, (name, n) in enumerate([(f"data_batch_{i}", n_per_batch) for i in range(1, 6)]
                                  + [("test_batch", n_test)]):
        images = _images(rng, n, 3)
        labels = rng.integers(0, 10, size=n).tolist()
        # Each row is 3072 bytes: the red plane, then green, then blue, each row-major.
        _pickle(folder / name, {"batch_label": f"batch {k}", "labels": labels,
                                "data": images.reshape(n, 3072),
                                "filenames": [f"img_{k}_{i}.png" for i in range(n)]})
        if name == "test_batch":
            test = (images, np.asarray(labels, dtype=np.int64))
        else:
            train_images.append(images)
            train_labels += labels
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                      "num_cases_per_batch": n_per_batch, "num_vis": 3072})
    return {"train": (np.concatenate(train_images), np.asarray(train_labels, dtype=np.int64)),
            "val": test}


def write_cifar100(root: Path, n_train: int = 16, n_test: int = 16, seed: int = 2) -> dict:
    """``root/cifar-100-python/{train, test, meta}`` (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        images = _images(rng, n, 3)
        fine = rng.integers(0, 100, size=n).tolist()
        _pickle(folder / name, {"filenames": [f"{name}_{i}.png" for i in range(n)],
                                "batch_label": f"{name} batch", "fine_labels": fine,
                                "coarse_labels": [f // 5 for f in fine],
                                "data": images.reshape(n, 3072)})
        out["train" if name == "train" else "val"] = (images, np.asarray(fine, dtype=np.int64))
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return out


def write_svhn(root: Path, n_train: int = 8, n_extra: int = 8, n_test: int = 16,
               seed: int = 3) -> dict:
    """``root/{train,extra,test}_32x32.mat``: ``X`` (32, 32, 3, N) uint8, ``y`` (N, 1) with
    label 10 for the digit 0 (the real files' convention)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    parts = {}
    for split, n in (("train", n_train), ("extra", n_extra), ("test", n_test)):
        images = _images(rng, n, 3)
        digits = rng.integers(0, 10, size=n)
        digits[:2] = 0  # make sure the 10 -> 0 mapping is exercised
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
        parts[split] = (images, digits.astype(np.int64))
    train = tuple(np.concatenate([parts["train"][i], parts["extra"][i]]) for i in range(2))
    return {"train": train, "val": parts["test"]}


WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10, "cifar100": write_cifar100,
           "svhn": write_svhn}


def write_all(root: Path) -> dict[str, dict]:
    """All four stand-ins under one root (the layout ``data.root`` expects)."""
    return {name: writer(root) for name, writer in WRITERS.items()}
