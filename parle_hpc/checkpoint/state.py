"""Capture and restore one replica's complete state (weights, buffers, optimizer, RNGs,
data sampler) as plain arrays and attributes for the HDF5 checkpoint."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .hdf5 import ReplicaState, read_group


def _scalar_attrs(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}


def capture_replica(model: nn.Module, opt, sampler) -> ReplicaState:
    """This rank's replica as a :class:`ReplicaState` (same paths and shapes on every rank)."""
    arrays: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        arrays[f"params/{name}"] = p.detach().cpu().numpy().copy()
    for name, b in model.named_buffers():
        arrays[f"buffers/{name}"] = b.detach().cpu().numpy().copy()
    state = opt.state_dict()
    for name, t in state["buffers"].items():
        arrays[f"optimizer/{name}"] = t.detach().cpu().numpy().copy()
    attrs: dict[str, dict[str, Any]] = {
        "optimizer": {"format": state["format"], **_scalar_attrs(state["param_groups"][0])},
        "optimizer/counters": dict(state["counters"]),
    }
    # RNG streams: torch (dropout), CUDA, NumPy and Python's, so a resumed run repeats them.
    arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"rng/cuda_{i}"] = s.numpy().copy()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    arrays["rng/numpy_keys"] = np.asarray(keys, dtype=np.uint32)
    version, py_state, gauss = random.getstate()
    arrays["rng/python_state"] = np.asarray(py_state, dtype=np.int64)
    attrs["rng"] = {"numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss),
                    "numpy_cached_gaussian": float(cached), "python_version": int(version),
                    "python_gauss": math.nan if gauss is None else float(gauss)}
    s = sampler.state_dict()
    arrays["sampler/generator"] = s["generator"].numpy().copy()
    arrays["sampler/order"] = s["order"].numpy().copy()
    attrs["sampler"] = {"position": int(s["position"]), "passes": int(s["passes"])}
    return ReplicaState(arrays, attrs)


def reference_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The reference model (weights and re-estimated BN statistics) as arrays."""
    out = {f"params/{n}": p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
    out.update({f"buffers/{n}": b.detach().cpu().numpy().copy() for n, b in model.named_buffers()})
    return out


@torch.no_grad()
def restore_replica(path: str | Path, replica: int, model: nn.Module, opt, sampler) -> None:
    """Load replica ``replica`` of checkpoint ``path`` into this rank's objects."""
    arrays, attrs = read_group(path, f"replicas/{replica}")
    for name, p in model.named_parameters():
        p.copy_(torch.from_numpy(arrays[f"params/{name}"]))
    for name, b in model.named_buffers():
        b.copy_(torch.from_numpy(arrays[f"buffers/{name}"]))
    hyper = dict(attrs["optimizer"])
    fmt = hyper.pop("format")
    buffers = {key.split("/", 1)[1]: torch.from_numpy(a) for key, a in arrays.items()
               if key.startswith("optimizer/")}
    opt.load_state_dict({"format": fmt, "param_groups": [hyper], "buffers": buffers,
                         "counters": {k: int(v) for k, v in attrs["optimizer/counters"].items()}})
    rng = attrs["rng"]
    torch.set_rng_state(torch.from_numpy(arrays["rng/torch"]))
    cuda = sorted(k for k in arrays if k.startswith("rng/cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(arrays[k]) for k in cuda])
    np.random.set_state(("MT19937", arrays["rng/numpy_keys"], rng["numpy_pos"],
                         rng["numpy_has_gauss"], rng["numpy_cached_gaussian"]))
    gauss = rng["python_gauss"]
    random.setstate((rng["python_version"], tuple(int(v) for v in arrays["rng/python_state"]),
                     None if math.isnan(gauss) else gauss))
    sampler.load_state_dict({"generator": torch.from_numpy(arrays["sampler/generator"]),
                             "order": torch.from_numpy(arrays["sampler/order"]),
                             "position": attrs["sampler"]["position"],
                             "passes": attrs["sampler"]["passes"]})
