"""One ``.h5`` file per checkpoint: the reference and every replica.

Layout (all names from ``named_parameters()`` / ``named_buffers()``)::

    /                         attrs: format="parle-hpc-checkpoint", version, step, epoch,
                                     sync, n_replicas, model, method, config (JSON), versions
    /reference/params/<name>
    /reference/buffers/<name>
    /replicas/<k>/params/<name>
    /replicas/<k>/buffers/<name>
    /replicas/<k>/optimizer/{anchor,average,inner_momentum,outer_momentum,reference}
                              attrs: inner_step, outer_step, steps, hyper-parameters

Every non-scalar dataset carries a Fletcher-32 checksum. Rank 0 writes the file; the other
replicas reach it one at a time (memory stays at one replica), packed into one float and
one integer buffer per replica. The file is written under a temporary name, flushed,
fsynced and renamed, so a reader never sees a partial checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

FORMAT = "parle-hpc-checkpoint"
VERSION = 1


def _replica_tensors(model: nn.Module, opt) -> dict[str, torch.Tensor]:
    """This replica's state as ``path -> tensor``; the same keys and shapes on every rank."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        out[f"params/{name}"] = p.detach()
    for name, b in model.named_buffers():
        out[f"buffers/{name}"] = b.detach()
    for name, tensor in opt.state_dict()["buffers"].items():
        out[f"optimizer/{name}"] = tensor
    return out


def _pack(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    floats = [t.reshape(-1).to("cpu", torch.float64) for t in tensors.values() if t.is_floating_point()]
    ints = [t.reshape(-1).to("cpu", torch.int64) for t in tensors.values() if not t.is_floating_point()]
    f = torch.cat(floats) if floats else torch.zeros(0, dtype=torch.float64)
    i = torch.cat(ints) if ints else torch.zeros(0, dtype=torch.int64)
    return f, i


def _unpack(template: dict[str, torch.Tensor], f: torch.Tensor, i: torch.Tensor) -> dict[str, np.ndarray]:
    out, fo, io = {}, 0, 0
    for key, t in template.items():
        n = t.numel()
        if t.is_floating_point():
            out[key] = f[fo:fo + n].to(t.dtype if t.dtype != torch.bfloat16 else torch.float32).view(t.shape).numpy()
            fo += n
        else:
            out[key] = i[io:io + n].to(t.dtype).view(t.shape).numpy()
            io += n
    return out


def _write_group(group: h5py.Group, arrays: dict[str, np.ndarray]) -> None:
    for key, array in arrays.items():
        if array.ndim == 0 or array.size == 0:
            group.create_dataset(key, data=array)
        else:
            group.create_dataset(key, data=array, fletcher32=True)


def save_checkpoint(path: str | Path, *, comm, model: nn.Module, opt, reference_model: nn.Module,
                    meta: dict[str, Any]) -> Path | None:
    """Collectively write a checkpoint; every rank must call it. Returns the path on rank 0."""
    path = Path(path)
    mine = _replica_tensors(model, opt)
    counters = opt.state_dict()["counters"]
    fh = None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if comm.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = h5py.File(tmp, "w")
            _write_root_attrs(fh, meta, comm.size)
            ref = {f"params/{n}": p.detach().cpu().numpy() for n, p in reference_model.named_parameters()}
            ref.update({f"buffers/{n}": b.detach().cpu().numpy() for n, b in reference_model.named_buffers()})
            _write_group(fh.require_group("reference"), ref)
        group_hparams = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        for k in range(comm.size):
            f, i = _pack(mine)
            comm.broadcast_(f, root=k)
            comm.broadcast_(i, root=k)
            replica_counters = comm.broadcast_object(counters, root=k)
            if fh is not None:
                g = fh.require_group(f"replicas/{k}")
                _write_group(g, _unpack(mine, f, i))
                opt_group = g["optimizer"]
                for key, value in {**replica_counters, **group_hparams}.items():
                    opt_group.attrs[key] = value
        if fh is not None:
            fh.flush()
            os.fsync(fh.id.get_vfd_handle())
            fh.close()
            fh = None
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        if fh is not None:
            fh.close()
        if comm.rank == 0 and tmp.exists():
            tmp.unlink()
    comm.barrier()
    return path if comm.rank == 0 else None


def _write_root_attrs(fh: h5py.File, meta: dict[str, Any], n_replicas: int) -> None:
    from .. import __version__

    fh.attrs["format"] = FORMAT
    fh.attrs["version"] = VERSION
    fh.attrs["n_replicas"] = n_replicas
    for key in ("step", "epoch", "sync", "model", "method"):
        fh.attrs[key] = meta[key]
    fh.attrs["config"] = json.dumps(meta.get("config", {}), sort_keys=True)
    fh.attrs["versions"] = json.dumps({"parle_hpc": __version__, "torch": torch.__version__,
                                       "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
                                       "python": platform.python_version()})


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint into plain dicts of NumPy arrays (validates format and checksums)."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as fh:
        if fh.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a parle_hpc checkpoint")
        out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}
        out["attrs"]["config"] = json.loads(out["attrs"]["config"])

        def read(group: h5py.Group) -> dict[str, Any]:
            return {k: (read(v) if isinstance(v, h5py.Group) else v[()]) for k, v in group.items()}

        out["reference"] = read(fh["reference"])
        out["replicas"] = {int(k): read(v) for k, v in fh["replicas"].items()}
    return out


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest ``*.h5`` in ``directory`` (by name, which carries the step), or None."""
    files = sorted(Path(directory).glob("ckpt-*.h5"))
    return files[-1] if files else None
