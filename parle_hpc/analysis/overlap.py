"""Permutation-invariant overlap of two networks (the Parle paper's Figure 1).

The overlap of networks ``a`` and ``b`` is the mean over weight layers (conv and linear;
BN layers are permuted along but not counted) of the cosine similarity of the layer's
weights with its bias appended, after ``b``'s hidden units are permuted to match ``a``'s.

Weight matching: the overlap is linear in each group's permutation once the others are
fixed, so coordinate descent over the groups of the :class:`~.permspec.PermSpec` solves
each step exactly with :func:`scipy.optimize.linear_sum_assignment`; sweeps repeat until
no group's assignment improves. The start is a forward pass that fixes each group from the
layers whose other axes are already fixed, which recovers the permutation of an exactly
permuted copy and makes the result independent of how either network's units are
numbered. Everything is deterministic.

Nothing here imports training or communication code: checkpoints are read with plain h5py
(layout in docs/checkpoint-format.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .permspec import (Axis, PermGroup, PermSpec, SpecError, check_spec, identity_permutations,
                       inverse_permutations, permutation_spec, permute_state, permute_tensor,
                       random_permutations, tensor_axes)

__all__ = ["Alignment", "CheckpointNetworks", "PermSpec", "SpecError", "align",
           "identity_permutations", "inverse_permutations", "layer_cosines", "model_for_state",
           "null_baseline", "overlap", "permutation_spec", "permute_state",
           "random_permutations", "read_checkpoint"]

Progress = Callable[[int, float], None]
"""Called after each sweep with (sweep number, overlap so far)."""


@dataclass
class Alignment:
    """Result of aligning ``b`` to ``a``: ``perms`` applied to ``b`` (``permute_state``)
    maximise the overlap found."""

    perms: dict[str, np.ndarray]
    overlap: float
    unaligned: float
    per_layer: dict[str, float]
    per_layer_unaligned: dict[str, float]
    sweeps: int
    start: str = "forward"

    def to_dict(self, with_perms: bool = False) -> dict[str, Any]:
        """JSON-ready summary (permutations only when asked: they are long)."""
        out: dict[str, Any] = {"overlap": self.overlap, "unaligned": self.unaligned,
                               "per_layer": self.per_layer,
                               "per_layer_unaligned": self.per_layer_unaligned,
                               "sweeps": self.sweeps, "start": self.start}
        if with_perms:
            out["perms"] = {k: v.tolist() for k, v in self.perms.items()}
        return out


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _layer_tensors(state: Mapping[str, Any], spec: PermSpec) -> dict[str, np.ndarray]:
    """The float64 weights and biases of the spec's layers (all that the overlap reads)."""
    out = {}
    for layer in spec.layers:
        for key in (layer.weight, layer.bias):
            if key is not None:
                out[key] = _as_array(state[key])
    return out


def _units(value: np.ndarray, ax: Axis) -> np.ndarray:
    """``value`` as a (units, rest) matrix along ``ax`` (a unit's block kept together)."""
    shape = value.shape
    n = shape[ax.axis] // ax.block
    split = value.reshape(shape[:ax.axis] + (n, ax.block) + shape[ax.axis + 1:])
    return np.moveaxis(split, ax.axis, 0).reshape(n, -1)


def _norm2(state: Mapping[str, np.ndarray], spec: PermSpec) -> dict[str, float]:
    return {layer.name: sum(float(np.sum(state[k] ** 2)) for k in (layer.weight, layer.bias)
                            if k is not None) for layer in spec.layers}


class _Matcher:
    """Coordinate descent for one pair; ``a`` is fixed, ``b`` is permuted."""

    def __init__(self, a: Mapping[str, Any], b: Mapping[str, Any], spec: PermSpec) -> None:
        check_spec(spec, a)
        check_spec(spec, b)
        self.spec = spec
        self.a = _layer_tensors(a, spec)
        self.b = _layer_tensors(b, spec)
        self.by_tensor = {k: v for k, v in tensor_axes(spec).items() if k in self.a}
        # ``a`` never moves: its unit matrices are made once, not once per sweep.
        self.a_units = {(ax.tensor, ax.axis): _units(self.a[ax.tensor], ax)
                        for g in spec.groups for ax in g.axes if ax.tensor in self.a}
        na, nb = _norm2(self.a, spec), _norm2(self.b, spec)
        # Each layer's inner product enters the objective scaled by 1 / (|a_l| |b_l| * layers),
        # so the objective *is* the mean cosine, the number reported.
        n_layers = len(spec.layers)
        self.coef: dict[str, float] = {}
        for layer in spec.layers:
            denom = np.sqrt(na[layer.name] * nb[layer.name]) * n_layers
            c = 0.0 if denom == 0 else 1.0 / denom
            for key in (layer.weight, layer.bias):
                if key is not None:
                    self.coef[key] = c

    def cost(self, group: PermGroup, perms: Mapping[str, np.ndarray],
             only_fixed: set[str] | None = None) -> np.ndarray:
        """``C[i, j]``: the objective's share from ``a``'s unit ``i`` facing ``b``'s unit ``j``
        in ``group``, with every other axis of ``b`` aligned by ``perms``. With
        ``only_fixed``, tensors whose other axes are not all in it are left out."""
        cost = np.zeros((group.size, group.size))
        for ax in group.axes:
            if ax.tensor not in self.a:
                continue  # BN parameters and statistics: permuted along, not counted
            axes, groups = self.by_tensor[ax.tensor]
            if only_fixed is not None and any(g not in only_fixed for x, g in zip(axes, groups)
                                              if x != ax):
                continue
            b_other = permute_tensor(self.b[ax.tensor], axes, groups, perms, skip=ax)
            a_units = self.a_units[(ax.tensor, ax.axis)]
            cost += self.coef[ax.tensor] * (a_units @ _units(b_other, ax).T)
        return cost

    def layer_cosines(self, perms: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Cosine similarity of every layer of ``a`` and of ``b`` permuted by ``perms``."""
        n_layers = len(self.spec.layers)
        out = {}
        for layer in self.spec.layers:
            dot = 0.0
            for key in (layer.weight, layer.bias):
                if key is None:
                    continue
                b_val = self.b[key]
                if key in self.by_tensor:
                    b_val = permute_tensor(b_val, *self.by_tensor[key], perms)
                dot += float(np.sum(self.a[key] * b_val)) * self.coef[key]
            out[layer.name] = dot * n_layers
        return out

    def objective(self, perms: Mapping[str, np.ndarray]) -> float:
        """The overlap with ``b`` permuted by ``perms``."""
        return float(np.mean(list(self.layer_cosines(perms).values())))

    def forward_start(self) -> dict[str, np.ndarray]:
        """Fix groups in forward order, each from the tensors whose other permuted axes are
        already fixed (all of them when there are none)."""
        perms = identity_permutations(self.spec)
        fixed: set[str] = set()
        for group in self.spec.groups:
            cost = self.cost(group, perms, only_fixed=fixed)
            if not cost.any():
                cost = self.cost(group, perms)
            perms[group.name] = linear_sum_assignment(cost, maximize=True)[1]
            fixed.add(group.name)
        return perms

    def descend(self, perms: dict[str, np.ndarray], max_sweeps: int,
                progress: Progress | None) -> tuple[dict[str, np.ndarray], int]:
        """Coordinate descent from ``perms`` until a sweep changes nothing."""
        for sweep in range(1, max_sweeps + 1):
            changed = False
            for group in self.spec.groups:
                cost = self.cost(group, perms)
                rows = np.arange(group.size)
                new = linear_sum_assignment(cost, maximize=True)[1]
                now = cost[rows, perms[group.name]].sum()
                # Accept strict improvements only, so ties cannot make the descent cycle.
                if cost[rows, new].sum() > now + 1e-12 * max(1.0, abs(now)):
                    perms[group.name] = new
                    changed = True
            if progress is not None:
                progress(sweep, self.objective(perms))
            if not changed:
                return perms, sweep
        return perms, max_sweeps


def align(a: Mapping[str, Any], b: Mapping[str, Any], spec: PermSpec, *, max_sweeps: int = 100,
          progress: Progress | None = None) -> Alignment:
    """Align ``b``'s hidden units to ``a``'s (state dicts of tensors or arrays).

    Symmetric (``align(b, a)`` finds the inverse permutations and the same overlap) and
    invariant to permuting either network first, up to floating-point ties.
    """
    matcher = _Matcher(a, b, spec)
    identity = identity_permutations(spec)
    unaligned = matcher.layer_cosines(identity)
    perms, sweeps = matcher.descend(matcher.forward_start(), max_sweeps, progress)
    start = "forward"
    if matcher.objective(perms) < np.mean(list(unaligned.values())):
        # Rare (networks already nearly aligned yet far from a permuted copy): the identity
        # is a better start. Descending from it keeps aligned >= unaligned.
        perms, more = matcher.descend(dict(identity), max_sweeps, progress)
        sweeps, start = sweeps + more, "identity"
    per_layer = matcher.layer_cosines(perms)
    return Alignment(perms=perms, overlap=float(np.mean(list(per_layer.values()))),
                     unaligned=float(np.mean(list(unaligned.values()))), per_layer=per_layer,
                     per_layer_unaligned=unaligned, sweeps=sweeps, start=start)


def layer_cosines(a: Mapping[str, Any], b: Mapping[str, Any], spec: PermSpec,
                  perms: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per-layer cosine similarity of ``a`` and ``b`` (``b`` permuted by ``perms`` if given)."""
    matcher = _Matcher(a, b, spec)
    return matcher.layer_cosines(identity_permutations(spec) if perms is None else perms)


def overlap(a: Mapping[str, Any], b: Mapping[str, Any], spec: PermSpec, *,
            aligned: bool = True) -> float:
    """The overlap of ``a`` and ``b``: after alignment, or as they are (``aligned=False``)."""
    if aligned:
        return align(a, b, spec).overlap
    return float(np.mean(list(layer_cosines(a, b, spec).values())))


# ---------------------------------------------------------------------- models and baselines
def model_for_state(name: str, state: Mapping[str, Any]) -> tuple[nn.Module, PermSpec]:
    """A registry model ``name`` shaped like ``state`` (its class count read from the last
    layer) and its spec; :class:`SpecError` if ``state`` does not fit the model."""
    from ..models import build

    model = build(name)
    spec = permutation_spec(name, model)
    classes = int(np.shape(state[spec.layers[-1].weight])[0])
    if classes != 10:
        model = build(name, num_classes=classes)
        spec = permutation_spec(name, model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(np.shape(v)) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:3]
        raise SpecError(f"tensors do not fit model {name!r}: e.g. {diff}")
    check_spec(spec, state)
    return model, spec


def null_baseline(name: str, num_classes: int = 10, seeds: tuple[int, int] = (0, 1), *,
                  max_sweeps: int = 100) -> Alignment:
    """Alignment of two independently initialised networks of model ``name``, seeded with
    ``torch.manual_seed(seed)`` before building (as training initialises replica ``seed``)."""
    from ..models import build

    states = []
    for seed in seeds:
        torch.manual_seed(seed)
        states.append(build(name, num_classes=num_classes).state_dict())
    spec = permutation_spec(name, build(name, num_classes=num_classes))
    return align(states[0], states[1], spec, max_sweeps=max_sweeps)


# ---------------------------------------------------------------------- checkpoints
@dataclass
class CheckpointNetworks:
    """The networks in one checkpoint file as state dicts of NumPy arrays."""

    path: Path
    model: str
    config: dict[str, Any]
    reference: dict[str, np.ndarray]
    replicas: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def run_name(self) -> str:
        """The run directory's name (``RUN_DIR/checkpoints/ckpt-*.h5``): unique where the
        configured ``name`` often is not (every demo run is called ``demo``)."""
        parent = self.path.resolve().parent
        return (parent.parent if parent.name == "checkpoints" else parent).name


def _state(group: h5py.Group) -> dict[str, np.ndarray]:
    state = {}
    for kind in ("params", "buffers"):
        if kind in group:
            for name, ds in group[kind].items():
                state[name] = np.asarray(ds[()])
    return state


def read_checkpoint(path: str | Path) -> CheckpointNetworks:
    """Reference and replicas of a parle_hpc checkpoint (``/reference/{params,buffers}/<name>``
    and ``/replicas/<k>/{params,buffers}/<name>``; root attributes ``model`` and ``config``)."""
    path = Path(path)
    with h5py.File(path, "r") as fh:
        if "reference" not in fh or "model" not in fh.attrs:
            raise ValueError(f"{path} is not a parle_hpc checkpoint (no /reference group or "
                             "model attribute)")
        model = fh.attrs["model"]
        model = model.decode() if isinstance(model, bytes) else str(model)
        config = json.loads(fh.attrs.get("config", "{}"))
        keys = sorted(fh["replicas"].keys(), key=int) if "replicas" in fh else []
        replicas = [_state(fh["replicas"][k]) for k in keys]
        return CheckpointNetworks(path, model, config, _state(fh["reference"]), replicas)
