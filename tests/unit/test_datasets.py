"""Dataset pipelines on stand-ins in the real on-disk formats, augmentation, staging errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from parle_hpc.config import ConfigError, load_config
from parle_hpc.data import (DATASETS, SOURCES, DatasetMissing, DatasetUnreadable, load_dataset)
from parle_hpc.data.augment import random_crop_flip
from parle_hpc.data.cli import main as parle_data
from parle_hpc.data.readers import STATS
from standin_data import WRITERS, write_all

NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("standins")
    return root, write_all(root)


def _expected(images: np.ndarray, name: str) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in STATS[name])
    return (torch.from_numpy(images).double() / 255.0 - mean) / std


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_pipeline_reads_the_real_formats(standins, name):
    root, written = standins
    ds = load_dataset(name, root, download=False)
    assert ds.name == name and ds.num_classes == NUM_CLASSES[name]
    for split in ("train", "val"):
        images, labels = written[name][split]
        got = getattr(ds, split)
        assert got.images.dtype == torch.float32 and got.images.is_contiguous()
        assert got.images.shape == images.shape  # (N, C, H, W)
        assert got.labels.dtype == torch.int64
        assert torch.equal(got.labels, torch.from_numpy(labels))  # SVHN: label 10 read as 0
        torch.testing.assert_close(got.images.double(), _expected(images, name),
                                   rtol=0, atol=1e-5)
    # CIFAR is augmented (crops and flips); MNIST and SVHN are not (as in the paper).
    assert (ds.augment is not None) == name.startswith("cifar")


def test_svhn_trains_on_train_plus_extra(standins):
    root, written = standins
    ds = load_dataset("svhn", root)
    assert len(ds.train) == 16 and len(ds.val) == 16  # 8 train + 8 extra; test for validation
    assert int((ds.train.labels == 0).sum()) >= 4  # the digit 0 is stored as 10 in both files


def test_normalisation_is_per_channel():
    from parle_hpc.data.readers import normalise

    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    images[:, 1] = 0
    out = normalise(images, (0.5, 0.5, 0.25), (0.5, 0.25, 0.25))
    assert torch.allclose(out[:, 0], torch.tensor(1.0)) and torch.allclose(out[:, 1], torch.tensor(-2.0))
    assert torch.allclose(out[:, 2], torch.tensor(3.0))


# ---------------------------------------------------------------------- augmentation
def _batch(n: int = 64) -> torch.Tensor:
    # Distinct values everywhere, so every crop/flip has exactly one explanation.
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _explain(out: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int, bool]]:
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    found = []
    for dy in range(9):
        for dx in range(9):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flip in (False, True):
                if torch.equal(out, crop.flip(-1) if flip else crop):
                    found.append((dy, dx, flip))
    return found


def test_augmentation_is_a_padded_crop_and_flip_of_each_image():
    images = _batch()
    out = random_crop_flip(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    params = []
    for k in range(len(images)):
        found = _explain(out[k], images[k])
        assert len(found) == 1, f"image {k}: output is not one padded crop (+flip): {found}"
        params.append(found[0])
    flips = {p[2] for p in params}
    offsets = {p[:2] for p in params}
    assert flips == {False, True}  # both happen
    assert len(offsets) > 10  # crops at many offsets, not only the centre
    assert any(dy in (0, 8) or dx in (0, 8) for dy, dx, _ in params)  # padding reaches the edges
    assert not torch.equal(out, images)
    assert images.equal(_batch())  # the input is left untouched


def test_augmentation_is_deterministic_given_the_generator():
    images = _batch(32)
    a = random_crop_flip(images, torch.Generator().manual_seed(7))
    b = random_crop_flip(images, torch.Generator().manual_seed(7))
    c = random_crop_flip(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    first, second = random_crop_flip(images, g), random_crop_flip(images, g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances


# ---------------------------------------------------------------------- missing / corrupt data
@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_missing_dataset_names_the_path_and_the_command(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetMissing) as err:
        load_dataset(name, root, download=False)
    message = str(err.value)
    assert str(root) in message
    assert f"parle-data download {name} --root {root}" in message
    assert "data.download=true" in message


def test_partly_staged_dataset_names_the_missing_file(tmp_path):
    WRITERS["cifar10"](tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissing, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("name,victim", [("cifar10", "cifar-10-batches-py/data_batch_2"),
                                         ("cifar100", "cifar-100-python/train"),
                                         ("svhn", "extra_32x32.mat"),
                                         ("mnist", "MNIST/raw/t10k-images-idx3-ubyte")])
def test_corrupt_file_is_reported_with_the_fix(tmp_path, name, victim):
    WRITERS[name](tmp_path)
    path = tmp_path / victim
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated copy
    with pytest.raises(DatasetUnreadable, match=f"parle-data download {name} --root"):
        load_dataset(name, tmp_path)


def test_config_needs_a_root_for_datasets_that_are_not_packaged():
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_config(None, ["data.name=cifar10"])
    assert load_config(None, ["data.name=svhn", "data.root=/x"]).data.root == "/x"
    assert set(DATASETS) == {"mnist5k", *SOURCES}


# ---------------------------------------------------------------------- parle-data
def test_parle_data_list_shows_what_is_staged(standins, tmp_path, capsys):
    root, _ = standins
    assert parle_data(["list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for name in ("mnist5k", "mnist", "cifar10", "cifar100", "svhn"):
        assert name in out
    assert out.count("[staged]") == 4
    assert parle_data(["list", "--root", str(tmp_path)]) == 0
    assert "[missing 7 of 7 files]" in capsys.readouterr().out  # cifar10


def test_parle_data_download_offline_paths(standins, tmp_path, monkeypatch, capsys):
    root, _ = standins
    assert parle_data(["download", "cifar10", "--root", str(root)]) == 0  # already staged
    assert "already staged" in capsys.readouterr().out
    assert parle_data(["download", "mnist5k", "--root", str(tmp_path)]) == 0
    assert parle_data(["download", "imagenet", "--root", str(tmp_path)]) == 2
    assert parle_data([]) == 2

    def offline(self, root):
        raise OSError("Name or service not known")

    monkeypatch.setattr(type(SOURCES["svhn"]), "stage", offline)
    assert parle_data(["download", "svhn", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "downloading svhn" in err and "Name or service not known" in err


def test_parle_data_is_an_installed_command():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["parle-data"] == "parle_hpc.data.cli:main"
    # (pip install -e . writes the script; make test / make demo run that install)
    assert Path(sys.executable).with_name("parle-data").is_file()
