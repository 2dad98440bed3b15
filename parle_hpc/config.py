"""Typed run configuration: one dataclass per YAML section, dotted CLI overrides.

``load_config("configs/demo.yaml", ["parle.L=10", "optim.lr=0.05"])`` reads the file,
applies the overrides (values parsed as YAML, so ``null``, lists and numbers work), and
returns a validated :class:`RunConfig`. Unknown keys and invalid values raise
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS = ("parle", "entropy-sgd", "elastic-sgd", "sgd", "dp-sgd")
# (L, rho0) each method uses when the parle section leaves them unset (null).
METHOD_DEFAULTS = {"parle": (25, 1.0), "entropy-sgd": (25, 0.0),
                   "elastic-sgd": (0, 1.0), "sgd": (0, 0.0), "dp-sgd": (0, 0.0)}


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"{key}: {message}")


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    """Which network to train."""

    name: str = "lenet"
    """Model name in the registry (``parle_hpc.models``)."""
    dropout: float | None = None
    """Dropout probability; null keeps the model's paper default."""

    def validate(self, key: str = "model") -> None:
        from .models import model_class

        try:
            model_class(self.name)  # accepts the pattern names, e.g. wrn-40-2
        except ValueError as exc:
            _fail(f"{key}.name", str(exc))
        if self.dropout is not None and not 0 <= self.dropout < 1:
            _fail(f"{key}.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass(kw_only=True, slots=True)
class DataConfig:
    """Dataset and per-replica sampling."""

    name: str = "mnist5k"
    """Dataset name (``mnist5k`` ships inside the package: no download needed)."""
    root: str | None = None
    """Directory holding the dataset; null uses the package's cache for ``mnist5k``."""
    download: bool = False
    """Let torchvision download a missing dataset (compute nodes are often offline)."""
    batch_size: int = 128
    """Minibatch size per replica."""
    frac: float = 1.0
    """Fraction of the training set each replica sees (contiguous shards, spec's frac)."""
    eval_batch_size: int = 1000
    """Batch size for evaluation and BN re-estimation."""

    def validate(self, key: str = "data") -> None:
        from .data import DATASETS

        if self.name not in DATASETS:
            _fail(f"{key}.name", f"unknown dataset {self.name!r}; known: {', '.join(DATASETS)}")
        if self.root is None and self.name != "mnist5k":  # only mnist5k ships in the package
            _fail(f"{key}.root", f"dataset {self.name} needs a directory (stage it there with "
                  f"`parle-data download {self.name} --root DIR`)")
        if self.batch_size < 1:
            _fail(f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            _fail(f"{key}.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        if not 0 < self.frac <= 1:
            _fail(f"{key}.frac", f"must be in (0, 1], got {self.frac}")


@dataclass(kw_only=True, slots=True)
class OptimConfig:
    """Method and learning rates."""

    method: str = "parle"
    """parle, entropy-sgd, elastic-sgd, sgd (Parle's special cases, one optimizer) or dp-sgd
    (one model data-parallel over all ranks: data.batch_size is the global minibatch, split
    evenly over the ranks, gradients averaged by one allreduce per minibatch)."""
    lr: float = 0.1
    """Initial (outer) learning rate eta; also the inner rate unless inner_lr is set."""
    lr_schedule: list[list[float]] | None = None
    """``[[until_epoch, lr], ...]``: lr by epoch; its first rate must equal ``lr``. null: constant."""
    inner_lr: float | None = None
    """Inner-loop rate eta_in, never annealed; null means ``lr``."""
    momentum: float = 0.9
    """Momentum mu of both loops."""
    nesterov: bool = True
    """Nesterov momentum (the paper's setting)."""
    weight_decay: float | None = None
    """Weight decay; null keeps the model's paper default."""
    grad_clip: float = 0.0
    """Clip each minibatch gradient to this global L2 norm (0: off, the paper's setting)."""

    def validate(self, key: str = "optim") -> None:
        from .optim.schedules import validate_lr_schedule

        if self.method not in METHODS:
            _fail(f"{key}.method", f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if not self.lr > 0:
            _fail(f"{key}.lr", f"must be > 0, got {self.lr}")
        if self.inner_lr is not None and not self.inner_lr > 0:
            _fail(f"{key}.inner_lr", f"must be > 0, got {self.inner_lr}")
        if not 0 <= self.momentum < 1:
            _fail(f"{key}.momentum", f"must be in [0, 1), got {self.momentum}")
        if self.grad_clip < 0:
            _fail(f"{key}.grad_clip", f"must be >= 0, got {self.grad_clip}")
        if self.weight_decay is not None and self.weight_decay < 0:
            _fail(f"{key}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.lr_schedule is not None:
            try:
                validate_lr_schedule(self.lr_schedule)
            except ValueError as exc:
                _fail(f"{key}.lr_schedule", str(exc))
            if self.lr_schedule[0][1] != self.lr:
                _fail(f"{key}.lr", f"{self.lr} differs from the first rate of {key}.lr_schedule "
                      f"({self.lr_schedule[0][1]}); set both, or {key}.lr_schedule=null")


@dataclass(kw_only=True, slots=True)
class ParleConfig:
    """Parle's coupling hyper-parameters (defaults: the paper's single setting)."""

    L: int | None = None
    """Inner steps per sync; null: 25 for parle/entropy-sgd, 0 for elastic-sgd/sgd."""
    gamma0: float = 0.01
    """Initial local-entropy coupling gamma."""
    gamma_max: float = 1.0
    """Cap of gamma."""
    rho0: float | None = None
    """Initial elastic coupling rho; null: 1 for parle/elastic-sgd, 0 for sgd/entropy-sgd."""
    rho_max: float = 10.0
    """Cap of rho."""
    scoping: float = 0.5
    """Couplings grow by (1 + scoping/B) per outer step (about e^scoping per epoch)."""
    alpha: float = 0.75
    """Weight of the old z in the running average of the inner iterates."""
    init: str = "independent"
    """``independent`` (seed + rank, as in the paper) or ``same`` (broadcast rank 0's)."""
    bn: str = "recompute"
    """Reference BN statistics: ``recompute`` (one pass over training data), ``average``, ``local``."""

    def validate(self, key: str = "parle") -> None:
        if self.L is not None and self.L < 0:
            _fail(f"{key}.L", f"must be >= 0, got {self.L}")
        for name in ("gamma0", "gamma_max", "rho_max", "scoping"):
            if getattr(self, name) < 0:
                _fail(f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.rho0 is not None and self.rho0 < 0:
            _fail(f"{key}.rho0", f"must be >= 0, got {self.rho0}")
        if not 0 <= self.alpha < 1:
            _fail(f"{key}.alpha", f"must be in [0, 1), got {self.alpha}")
        if self.init not in ("independent", "same"):
            _fail(f"{key}.init", f"must be 'independent' or 'same', got {self.init!r}")
        if self.bn not in ("recompute", "average", "local"):
            _fail(f"{key}.bn", f"must be recompute, average or local, got {self.bn!r}")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """The loop."""

    epochs: int = 5
    """Epochs; one epoch is B outer steps (B*L minibatches per replica; B when L = 0)."""
    seed: int = 0
    """Base seed; replica a uses seed + a for its initialisation and its minibatches."""
    device: str = "auto"
    """``auto`` (one GPU per local rank when there are GPUs, else CPU), ``cpu`` or ``cuda``."""
    gpu_oversubscribe: bool = False
    """Allow more ranks than GPUs on a node (ranks then share GPUs round-robin)."""
    threads: int = 0
    """CPU threads per rank; 0 splits the node's cores evenly over the local ranks."""
    eval_every: int = 1
    """Evaluate the reference every this many epochs (and always after the last)."""
    max_syncs: int = 0
    """End the run after this many syncs, evaluating and checkpointing as at its end
    (0: no limit; for smoke tests)."""
    log_every: int = 1
    """Write a metrics line every this many syncs."""
    progress: bool = True
    """Progress bar on rank 0 (when stderr is a terminal; plain lines otherwise)."""
    eval_replicas: bool = False
    """Also evaluate every replica's own weights each evaluation (n times the work)."""
    bf16: bool = False
    """bfloat16 autocast for forward passes on GPU (weights and the optimizer stay fp32)."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to RUN_DIR/tensorboard (needs the tensorboard package)."""

    def validate(self, key: str = "train") -> None:
        for name in ("epochs", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                _fail(f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.max_syncs < 0:
            _fail(f"{key}.max_syncs", f"must be >= 0, got {self.max_syncs}")
        if self.threads < 0:
            _fail(f"{key}.threads", f"must be >= 0, got {self.threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            _fail(f"{key}.device", f"must be auto, cpu or cuda, got {self.device!r}")


@dataclass(kw_only=True, slots=True)
class DistConfig:
    """How ranks talk."""

    backend: str = "auto"
    """auto, single, torch, mpi or horovod (auto logs its choice)."""
    timeout_s: float = 600.0
    """Seconds a torch.distributed collective may block before the job fails."""

    def validate(self, key: str = "dist") -> None:
        from .comm import BACKENDS

        if self.backend not in BACKENDS:
            _fail(f"{key}.backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.timeout_s > 0:
            _fail(f"{key}.timeout_s", f"must be > 0, got {self.timeout_s}")


@dataclass(kw_only=True, slots=True)
class CheckpointConfig:
    """HDF5 checkpoints of all replicas and the reference."""

    enabled: bool = True
    """Write checkpoints at all."""
    every_epochs: int = 1
    """Checkpoint every this many epochs (and after the last)."""
    keep: int = 3
    """Keep the newest this many checkpoints."""
    signals: list[str] = field(default_factory=lambda: ["SIGUSR2", "SIGTERM"])
    """Signals that request checkpoint-and-exit (code 75, "requeue me") at the next sync.
    Avoid SIGUSR1: NCCL may use it."""
    walltime_s: float = 0.0
    """Wall-time budget of the job in seconds (0: none): checkpoint and exit 75 before it."""
    walltime_margin_s: float = 120.0
    """Stop this many seconds before ``walltime_s`` (time for the last sync and the write)."""
    parallel: bool | None = None
    """Parallel HDF5 writing (all ranks into one file with the mpio driver): true, false, or
    null for automatic (when h5py has MPI and the backend is mpi)."""

    def validate(self, key: str = "checkpoint") -> None:
        import signal as _signal

        if self.every_epochs < 1:
            _fail(f"{key}.every_epochs", f"must be >= 1, got {self.every_epochs}")
        if self.keep < 1:
            _fail(f"{key}.keep", f"must be >= 1, got {self.keep}")
        for name in self.signals:
            if not isinstance(name, str) or not hasattr(_signal, name) or name in ("SIGKILL", "SIGSTOP"):
                _fail(f"{key}.signals", f"{name!r} is not a catchable signal name like SIGUSR2")
        if self.walltime_s < 0 or self.walltime_margin_s < 0:
            _fail(f"{key}.walltime_s", "walltime_s and walltime_margin_s must be >= 0")



@dataclass(kw_only=True, slots=True)
class RunConfig:
    """A whole run: one field per YAML section."""

    name: str = "run"
    """Run name (labels plots)."""
    out_dir: str = "runs/run"
    """Run directory: resolved config, metrics.jsonl, checkpoints/, plots."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parle: ParleConfig = field(default_factory=ParleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate(f.name)
        if not self.out_dir:
            _fail("out_dir", "must not be empty")
        L, rho0 = self.effective_L, self.effective_rho0
        method = self.optim.method
        if method in ("parle", "entropy-sgd") and L == 0:
            _fail("parle.L", f"method {method} needs L >= 1 (L = 0 is elastic-sgd / sgd)")
        if method in ("elastic-sgd", "sgd", "dp-sgd") and L != 0:
            _fail("parle.L", f"method {method} has no inner loop: L must be 0, got {L}")
        if method in ("sgd", "entropy-sgd", "dp-sgd") and rho0 != 0:
            _fail("parle.rho0", f"method {method} has no elastic coupling: rho0 must be 0")

    @property
    def effective_L(self) -> int:
        return METHOD_DEFAULTS[self.optim.method][0] if self.parle.L is None else self.parle.L

    @property
    def effective_rho0(self) -> float:
        return METHOD_DEFAULTS[self.optim.method][1] if self.parle.rho0 is None else self.parle.rho0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- loading
def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (int/float/bool/str/list/None unions)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return None
        origin = typing.get_origin(option)
        if origin is list and isinstance(value, list):
            return value
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join("null" if o is type(None) else getattr(o, "__name__", str(o))
                        for o in options)
    _fail(key, f"expected {names}, got {value!r}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        _fail(prefix.rstrip(".") or "<root>", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            _fail(f"{prefix}{key}", f"unknown key; known keys here: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(f"{prefix}{key}", value, hint)
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    cfg = _build(RunConfig, data)
    cfg.validate()
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file (or start from defaults), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    return config_from_dict(apply_overrides(data, list(overrides or [])))
