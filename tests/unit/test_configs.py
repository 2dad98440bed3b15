"""The experiment configs: one per row and method of the paper's results table, each valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from parle_hpc.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The spec's results table (top-1 validation error %): file stem -> (error, n).
PAPER = {
    "lenet-mnist-sgd": ("0.50", 1), "lenet-mnist-entropy-sgd": ("0.49", 1),
    "lenet-mnist-elastic-sgd-n6": ("0.48", 6), "lenet-mnist-parle-n6": ("0.44", 6),
    "allcnn-cifar10-sgd": ("6.15", 1), "allcnn-cifar10-entropy-sgd": ("5.76", 1),
    "allcnn-cifar10-parle-n3": ("5.18", 3),
    "allcnn-cifar10-frac50-elastic-sgd-n3": ("6.51", 3), "allcnn-cifar10-frac50-parle-n3": ("5.89", 3),
    "allcnn-cifar10-frac25-elastic-sgd-n6": ("6.8", 6), "allcnn-cifar10-frac25-parle-n6": ("6.08", 6),
    "wrn-28-10-cifar10-sgd": ("4.29", 1), "wrn-28-10-cifar10-entropy-sgd": ("4.23", 1),
    "wrn-28-10-cifar10-elastic-sgd-n3": ("4.38", 3), "wrn-28-10-cifar10-parle-n3": ("3.24", 3),
    "wrn-28-10-cifar10-parle-n8": ("3.77", 8),
    "wrn-28-10-cifar100-sgd": ("18.85", 1), "wrn-28-10-cifar100-entropy-sgd": ("19.05", 1),
    "wrn-28-10-cifar100-elastic-sgd-n3": ("21.36", 3), "wrn-28-10-cifar100-parle-n3": ("17.64", 3),
    "wrn-28-10-cifar100-parle-n8": ("17.76", 8),
    "wrn-16-4-svhn-sgd": ("1.62", 1), "wrn-16-4-svhn-entropy-sgd": ("1.64", 1),
    "wrn-16-4-svhn-elastic-sgd-n3": ("1.57", 3), "wrn-16-4-svhn-parle-n3": ("1.68", 3),
}
BASELINES = {"lenet-mnist-dp-sgd", "allcnn-cifar10-dp-sgd"}
PAPER_FILES = sorted(PAPER) + sorted(BASELINES)


def test_every_paper_experiment_has_exactly_one_config():
    stems = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert stems == set(PAPER) | BASELINES | {"demo"}


@pytest.mark.parametrize("stem", PAPER_FILES)
def test_config_is_valid_and_documented(stem):
    path = CONFIGS / f"{stem}.yaml"
    text = path.read_text()
    cfg = load_config(path)
    raw = yaml.safe_load(text)
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert cfg.name == stem and cfg.out_dir == f"runs/{stem}"
    assert raw["data"]["root"] == "data/" and raw["data"]["download"] is False
    assert f"parle-data download {cfg.data.name} --root data/" in header
    n = int(re.search(r"mpirun -np (\d+) parle-train --config configs/(\S+)", header)[1])
    assert f"--config configs/{stem}.yaml" in header
    method = cfg.optim.method
    frac = f"-frac{round(cfg.data.frac * 100)}" if cfg.data.frac < 1 else ""
    replicas = f"-n{n}" if method in ("parle", "elastic-sgd") else ""
    assert stem == f"{cfg.model.name}-{cfg.data.name}{frac}-{method}{replicas}"
    # The paper's single setting.
    assert cfg.data.batch_size == 128 and cfg.optim.lr == 0.1 and cfg.optim.momentum == 0.9
    assert cfg.optim.nesterov and cfg.parle.scoping == 0.5 and cfg.parle.alpha == 0.75
    assert (cfg.parle.gamma0, cfg.parle.gamma_max, cfg.parle.rho_max) == (0.01, 1.0, 10.0)
    assert cfg.effective_L == (25 if method in ("parle", "entropy-sgd") else 0)
    assert cfg.effective_rho0 == (1.0 if method in ("parle", "elastic-sgd") else 0.0)
    assert cfg.train.epochs == (5 if cfg.effective_L else 125)
    assert cfg.optim.lr_schedule[-1][0] == cfg.train.epochs
    assert cfg.model.dropout == (0.4 if cfg.data.name == "svhn" else
                                 {"lenet": 0.25, "allcnn": 0.5}.get(cfg.model.name, 0.25))
    if stem in BASELINES:
        assert method == "dp-sgd" and cfg.data.batch_size % n == 0
        return
    error, replicas = PAPER[stem]
    assert n == replicas
    assert f"Expected top-1 validation error of the reference: {error}%" in header
    assert cfg.data.frac == (0.5 if "frac50" in stem else 0.25 if "frac25" in stem else 1.0)


def test_readme_lists_every_config():
    readme = (CONFIGS / "README.md").read_text()
    for stem in PAPER_FILES:
        assert f"`{stem}.yaml`" in readme
