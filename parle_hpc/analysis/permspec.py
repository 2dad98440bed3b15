"""Permutation specifications: which axes of which ``state_dict`` tensors a hidden-layer
permutation acts on, for every model of the registry.

Permuting the hidden units of a layer -- its output channels or units, the BN weight, bias
and running statistics that follow it, and the next layer's input axis -- leaves the
function a network computes unchanged. A :class:`PermSpec` lists one :class:`PermGroup` per
independent permutation; a group lists every :class:`Axis` it acts on. Layers tied by a
residual connection (wide ResNets) share one group, because their outputs are added
channel by channel. The spec also lists the weight layers whose cosine similarity makes up
the overlap (:mod:`parle_hpc.analysis.overlap`).

A permutation is an index array ``perm``: unit ``i`` of the permuted network is unit
``perm[i]`` of the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Axis:
    """Axis ``axis`` of tensor ``tensor`` is made of ``size`` units of ``block`` consecutive
    entries each (``block > 1`` where a conv output is flattened into a linear layer: one
    channel is its ``H * W`` spatial positions)."""

    tensor: str
    axis: int
    block: int = 1


@dataclass(frozen=True)
class PermGroup:
    """One permutation of ``size`` units, acting on every axis in ``axes``."""

    name: str
    size: int
    axes: tuple[Axis, ...]


@dataclass(frozen=True)
class Layer:
    """A weight layer counted in the overlap: its weight and (optional) bias."""

    name: str
    weight: str
    bias: str | None


@dataclass(frozen=True)
class PermSpec:
    """Every permutation symmetry of one model (``groups``) and its weight layers (``layers``),
    both in forward order."""

    model: str
    groups: tuple[PermGroup, ...]
    layers: tuple[Layer, ...]

    def axes_of(self, tensor: str) -> list[tuple[PermGroup, Axis]]:
        """The (group, axis) pairs acting on ``tensor``."""
        return [(g, a) for g in self.groups for a in g.axes if a.tensor == tensor]


class SpecError(ValueError):
    """A specification does not fit the tensors it is applied to."""


# ---------------------------------------------------------------------- building specs
@dataclass
class _Builder:
    """Collects groups while a spec function walks a model in forward order."""

    model: str
    groups: dict[str, list[Axis]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)

    def group(self, name: str, size: int) -> str:
        if name in self.groups:
            raise SpecError(f"{self.model}: permutation group {name!r} defined twice")
        self.groups[name], self.sizes[name] = [], size
        return name

    def act(self, group: str, tensor: str, axis: int, block: int = 1) -> None:
        self.groups[group].append(Axis(tensor, axis, block))

    def weight_layer(self, module_name: str, module: nn.Module, out_group: str | None,
                     in_group: str | None, in_block: int = 1) -> None:
        """A conv or linear layer: rows (and bias) in ``out_group``, inputs in ``in_group``."""
        bias = f"{module_name}.bias" if getattr(module, "bias", None) is not None else None
        self.layers.append(Layer(module_name, f"{module_name}.weight", bias))
        if out_group is not None:
            self.act(out_group, f"{module_name}.weight", 0)
            if bias is not None:
                self.act(out_group, bias, 0)
        if in_group is not None:
            self.act(in_group, f"{module_name}.weight", 1, in_block)

    def batch_norm(self, module_name: str, module: nn.Module, group: str) -> None:
        """BN over ``group``'s channels: affine weight and bias and both running statistics."""
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, suffix, None) is not None:
                self.act(group, f"{module_name}.{suffix}", 0)

    def build(self) -> PermSpec:
        groups = tuple(PermGroup(n, self.sizes[n], tuple(axes)) for n, axes in self.groups.items())
        return PermSpec(self.model, groups, tuple(self.layers))


def _chain_spec(model_name: str, model: nn.Module, chain: list[tuple[str, str | None]]) -> PermSpec:
    """Spec of a plain feed-forward chain ``[(conv or linear, BN after it or None), ...]``.

    Every layer's output is a permutation group except the last (the logits have a fixed
    order). Where a conv feeds a linear layer through a flatten, each channel is a block of
    ``in_features / channels`` consecutive inputs (PyTorch flattens C, H, W in that order).
    """
    modules = dict(model.named_modules())
    b = _Builder(model_name)
    previous: str | None = None
    previous_channels = 0
    for k, (name, bn_name) in enumerate(chain):
        layer = modules[name]
        n_in = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
        n_out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        block = 1
        if previous is not None:
            if n_in % previous_channels:
                raise SpecError(f"{model_name}: {name} has {n_in} inputs, not a multiple of "
                                f"the {previous_channels} units before it")
            block = n_in // previous_channels
        last = k == len(chain) - 1
        group = None if last else b.group(name, n_out)
        b.weight_layer(name, layer, group, previous, block)
        if bn_name is not None:
            if group is None:
                continue  # BN on the logits: not permuted, the logits keep their order
            b.batch_norm(bn_name, modules[bn_name], group)
        previous, previous_channels = group, n_out
    return b.build()


def lenet_spec(model: nn.Module, name: str = "lenet") -> PermSpec:
    """LeNet: conv1 (20) and conv2 (50) channels, fc1's 500 units; conv2 -> fc1 flattens
    50 channels x 2 x 2, so each channel is a block of 4 of fc1's 200 inputs."""
    chain = [("features.0.0", "features.0.1"), ("features.1.0", "features.1.1"),
             ("classifier.1", "classifier.2"), ("classifier.5", None)]
    return _chain_spec(name, model, chain)


def allcnn_spec(model: nn.Module, name: str = "allcnn") -> PermSpec:
    """All-CNN-C: the channels of each of the first eight convolutions (each with its BN);
    the last 1x1 convolution gives the class scores and keeps its order."""
    chain = []
    for idx, block in model.features.named_children():
        if isinstance(block, nn.Sequential):  # conv-BN-ReLU; the dropouts hold no weights
            chain.append((f"features.{idx}.0", f"features.{idx}.1"))
    return _chain_spec(name, model, chain)


def wrn_spec(model: nn.Module, name: str = "wrn") -> PermSpec:
    """Wide ResNet (pre-activation blocks): one group per block's inner channels
    (conv1 out, bn2, conv2 in) and one per residual stream. Every tensor that writes to or
    reads from a stream -- the stem, each block's bn1, conv1 input, conv2 output and 1x1
    shortcut, and the final BN and linear input -- shares that stream's group, because the
    stream is a sum over all of them. A projection shortcut starts a new stream."""
    b = _Builder(name)
    stream = b.group("stream0", model.stem.out_channels)
    b.weight_layer("stem", model.stem, stream, None)
    n_streams = 1
    for g, group in enumerate(model.groups):
        for k, block in enumerate(group):
            prefix = f"groups.{g}.{k}"
            b.batch_norm(f"{prefix}.bn1", block.bn1, stream)
            inner = b.group(f"{prefix}.inner", block.conv1.out_channels)
            b.weight_layer(f"{prefix}.conv1", block.conv1, inner, stream)
            b.batch_norm(f"{prefix}.bn2", block.bn2, inner)
            out_stream = stream
            if block.shortcut is not None:
                out_stream = b.group(f"stream{n_streams}", block.conv2.out_channels)
                n_streams += 1
                b.weight_layer(f"{prefix}.shortcut", block.shortcut, out_stream, stream)
            b.weight_layer(f"{prefix}.conv2", block.conv2, out_stream, inner)
            stream = out_stream
    b.batch_norm("bn", model.bn, stream)
    b.weight_layer("fc", model.fc, None, stream)  # after global average pooling: block 1
    return b.build()


def permutation_spec(name: str, model: nn.Module) -> PermSpec:
    """The spec of registry model ``name`` (``model`` is an instance, for layer sizes)."""
    if name == "lenet":
        return lenet_spec(model, name)
    if name == "allcnn":
        return allcnn_spec(model, name)
    if name.startswith("wrn-"):
        return wrn_spec(model, name)
    raise SpecError(f"no permutation specification for model {name!r} (known: lenet, allcnn, "
                    "wrn-<depth>-<width>)")


# ---------------------------------------------------------------------- applying specs
def check_spec(spec: PermSpec, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
    """Raise :class:`SpecError` unless every axis of ``spec`` exists in ``state`` with
    ``size * block`` entries, no axis is claimed twice and every layer's tensors exist."""
    seen: set[tuple[str, int]] = set()
    for group in spec.groups:
        for ax in group.axes:
            if ax.tensor not in state:
                raise SpecError(f"{spec.model}: group {group.name} names missing tensor "
                                f"{ax.tensor}")
            shape = tuple(state[ax.tensor].shape)
            if ax.axis >= len(shape) or shape[ax.axis] != group.size * ax.block:
                raise SpecError(f"{spec.model}: group {group.name} expects axis {ax.axis} of "
                                f"{ax.tensor} to have {group.size} x {ax.block} entries; shape "
                                f"is {shape}")
            if (ax.tensor, ax.axis) in seen:
                raise SpecError(f"{spec.model}: axis {ax.axis} of {ax.tensor} is in two groups")
            seen.add((ax.tensor, ax.axis))
    for layer in spec.layers:
        for key in (layer.weight, layer.bias):
            if key is not None and key not in state:
                raise SpecError(f"{spec.model}: layer {layer.name} names missing tensor {key}")


def axis_index(perm: np.ndarray, block: int) -> np.ndarray:
    """Entry indices along an axis of ``len(perm)`` units of ``block`` entries each."""
    perm = np.asarray(perm, dtype=np.int64)
    return (perm[:, None] * block + np.arange(block)[None, :]).reshape(-1)


def permute_tensor(value, axes: list[Axis], groups: list[str],
                   perms: Mapping[str, np.ndarray], skip: Axis | None = None):
    """``value`` (tensor or array) with ``perms[groups[i]]`` applied along ``axes[i]``,
    leaving out ``skip``."""
    for ax, group in zip(axes, groups):
        if ax == skip:
            continue
        index = axis_index(perms[group], ax.block)
        if isinstance(value, torch.Tensor):
            value = value.index_select(ax.axis, torch.from_numpy(index).to(value.device))
        else:
            value = np.take(value, index, axis=ax.axis)
    return value


def tensor_axes(spec: PermSpec) -> dict[str, tuple[list[Axis], list[str]]]:
    """Tensor name -> (its permuted axes, the group of each)."""
    out: dict[str, tuple[list[Axis], list[str]]] = {}
    for group in spec.groups:
        for ax in group.axes:
            axes, names = out.setdefault(ax.tensor, ([], []))
            axes.append(ax)
            names.append(group.name)
    return out


def permute_state(state: Mapping[str, torch.Tensor | np.ndarray], spec: PermSpec,
                  perms: Mapping[str, np.ndarray]) -> dict:
    """A copy of ``state`` with every group's permutation applied (other entries as they are)."""
    by_tensor = tensor_axes(spec)
    out = {}
    for key, value in state.items():
        if key in by_tensor:
            out[key] = permute_tensor(value, *by_tensor[key], perms=perms)
        else:
            out[key] = value.clone() if isinstance(value, torch.Tensor) else np.array(value)
    return out


def identity_permutations(spec: PermSpec) -> dict[str, np.ndarray]:
    """The identity for every group."""
    return {g.name: np.arange(g.size) for g in spec.groups}


def random_permutations(spec: PermSpec, seed: int) -> dict[str, np.ndarray]:
    """A random permutation for every group, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return {g.name: rng.permutation(g.size) for g in spec.groups}


def inverse_permutations(perms: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of every permutation in ``perms``."""
    return {name: np.argsort(p) for name, p in perms.items()}
