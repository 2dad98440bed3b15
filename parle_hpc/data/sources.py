"""Where each dataset lives on disk, how to tell it is there, and how to stage it.

Compute nodes are often offline, so training never downloads unless told to
(``data.download: true``); ``parle-data download NAME --root DIR`` stages a dataset on a
machine with internet access through torchvision's own download code, which verifies
every archive and file against its published MD5 checksum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import DatasetMissing


@dataclass(frozen=True)
class Source:
    """A dataset as torchvision stores it under a root directory."""

    name: str
    description: str
    folder: str
    """Directory under the root that holds the files (``.`` for the root itself)."""
    files: tuple[str, ...]
    """Files (relative to ``folder``) the reader needs."""
    download_size: str
    """Approximate size of the download, for ``parle-data list``."""

    def directory(self, root: str | Path) -> Path:
        """The directory under ``root`` that holds this dataset's files."""
        return Path(root).expanduser().absolute() / self.folder

    def missing(self, root: str | Path) -> list[Path]:
        """The needed files that are not under ``root`` (empty when the dataset is staged)."""
        directory = self.directory(root)
        return [directory / f for f in self.files if not (directory / f).is_file()]

    def stage_command(self, root: str | Path) -> str:
        """The shell command that stages this dataset under ``root``."""
        return f"parle-data download {self.name} --root {Path(root).expanduser().absolute()}"

    def require(self, root: str | Path) -> None:
        """Raise :class:`DatasetMissing` at once, naming the path and the command to run."""
        missing = self.missing(root)
        if not missing:
            return
        directory = self.directory(root)
        shown = ", ".join(str(p.relative_to(directory)) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetMissing(
            f"dataset {self.name} not found under {directory} (missing {shown}{more}). "
            f"Stage it on a machine with internet access (e.g. a login node):\n"
            f"    {self.stage_command(root)}\n"
            f"or set data.download=true to let this job download it.")

    def stage(self, root: str | Path) -> Path:
        """Download (if needed) and verify the dataset under ``root`` with torchvision."""
        from torchvision import datasets

        root = str(Path(root).expanduser().absolute())
        Path(root).mkdir(parents=True, exist_ok=True)
        if self.name == "mnist":
            datasets.MNIST(root, train=True, download=True)
            datasets.MNIST(root, train=False, download=True)
        elif self.name == "cifar10":
            datasets.CIFAR10(root, train=True, download=True)
        elif self.name == "cifar100":
            datasets.CIFAR100(root, train=True, download=True)
        elif self.name == "svhn":
            for split in ("train", "extra", "test"):
                datasets.SVHN(root, split=split, download=True)
        else:
            raise ValueError(f"dataset {self.name} cannot be downloaded")
        self.require(root)
        return self.directory(root)


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("mnist", "MNIST digits, 60,000 train / 10,000 test, 1x28x28", "MNIST/raw",
           _MNIST_FILES, "12 MB"),
    Source("cifar10", "CIFAR-10, 50,000 train / 10,000 test, 3x32x32, 10 classes",
           "cifar-10-batches-py",
           tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
           "163 MB"),
    Source("cifar100", "CIFAR-100, 50,000 train / 10,000 test, 3x32x32, 100 classes",
           "cifar-100-python", ("train", "test", "meta"), "161 MB"),
    Source("svhn", "SVHN digits, 604,388 train (train + extra) / 26,032 test, 3x32x32",
           ".", ("train_32x32.mat", "extra_32x32.mat", "test_32x32.mat"), "2.6 GB"),
)}
