"""One ``.h5`` file per checkpoint: the reference and every replica (format in
docs/checkpoint-format.md). No pickles: every value is an HDF5 dataset or attribute.

Writing is collective (every rank calls :func:`save_checkpoint`):

* with parallel HDF5 (h5py built with MPI) and an mpi4py communicator, all ranks open one
  file with the ``mpio`` driver, create every dataset together, and each writes its own
  replica;
* otherwise the replicas reach rank 0 one at a time (memory stays at one replica), packed
  into one float and one integer buffer per replica, and rank 0 writes.

Either way the file is written under a temporary name, flushed, fsynced and renamed, so a
reader never sees a partial checkpoint, and every dataset carries a SHA-256 of its bytes
(attribute ``sha256``; non-scalar datasets also a Fletcher-32 checksum in the serial path)
so :func:`validate_checkpoint` detects truncation and bit flips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

FORMAT = "parle-hpc-checkpoint"
VERSION = 1
log = logging.getLogger("parle_hpc.checkpoint")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or does not fit this run."""


@dataclass
class ReplicaState:
    """What one rank contributes: ``arrays`` (path -> array, same paths and shapes on every
    rank) and ``attrs`` (group path -> small attributes)."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, dict[str, Any]]


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def mpi_communicator(comm) -> Any | None:
    """The mpi4py communicator behind ``comm`` when parallel HDF5 can use it, else None."""
    mpi_comm = getattr(comm, "comm", None)
    if mpi_comm is None or not h5py.get_config().mpi or comm.size == 1:
        return None
    return mpi_comm


# ---------------------------------------------------------------------- writing
def save_checkpoint(path: str | Path, *, comm, replica: ReplicaState,
                    reference: dict[str, np.ndarray], meta: dict[str, Any],
                    parallel: bool | None = None) -> Path:
    """Collectively write a checkpoint to ``path`` (atomically). Every rank must call it.

    ``reference`` is needed on rank 0 only. ``parallel=None`` uses parallel HDF5 when
    available. Raises :class:`CheckpointError` on every rank if the write failed (e.g. a
    full disk); earlier checkpoints are untouched either way.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    mpi_comm = mpi_communicator(comm) if parallel in (None, True) else None
    if parallel and mpi_comm is None:
        raise CheckpointError("parallel checkpoint writing needs h5py built with MPI and the mpi backend")
    error = None
    if comm.rank == 0:
        error = _check_space(tmp.parent, replica, reference, comm.size)
    error = comm.broadcast_object(error, root=0)
    if error is not None:
        raise CheckpointError(f"not writing checkpoint {path}: {error}; earlier checkpoints are intact")
    try:
        if mpi_comm is not None:
            _write_parallel(tmp, mpi_comm, comm, replica, reference, meta)
        else:
            error = _write_gathered(tmp, comm, replica, reference, meta)
    except OSError as exc:  # parallel path: every rank sees the failure of the collective I/O
        error = f"{type(exc).__name__}: {exc}"
    if comm.rank == 0 and error is None:
        try:
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(path.parent)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
    if comm.rank == 0 and error is not None:
        tmp.unlink(missing_ok=True)
    error = comm.broadcast_object(error, root=0)
    if error is not None:
        raise CheckpointError(f"writing checkpoint {path} failed ({error}); earlier checkpoints "
                              "are intact")
    return path


def estimated_size(replica: ReplicaState, reference: dict[str, np.ndarray], n_replicas: int) -> int:
    """Bytes a checkpoint will take: data plus a generous allowance for HDF5 metadata."""
    data = n_replicas * sum(a.nbytes for a in replica.arrays.values())
    data += sum(a.nbytes for a in reference.values())
    datasets = n_replicas * len(replica.arrays) + len(reference)
    return int(data * 1.02) + 4096 * datasets + (1 << 20)


def _check_space(directory: Path, replica: ReplicaState, reference: dict[str, np.ndarray],
                 n_replicas: int) -> str | None:
    """Refuse to start a write that cannot fit: HDF5 does not fail cleanly when the disk fills
    up mid-write (a crash then still leaves the earlier checkpoints intact, and the temporary
    file is removed at the next start, see :func:`remove_stale_temporaries`)."""
    directory.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    need = estimated_size(replica, reference, n_replicas)
    if free < need:
        return (f"No space left on device: {free / 2**20:.1f} MiB free in {directory}, "
                f"about {need / 2**20:.1f} MiB needed")
    return None


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files an interrupted write left behind (rank 0, at start-up)."""
    removed = []
    for tmp in Path(directory).glob(".ckpt-*.h5.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _write_root(fh: h5py.File, meta: dict[str, Any], n_replicas: int) -> None:
    from .. import __version__

    fh.attrs["format"] = FORMAT
    fh.attrs["version"] = VERSION
    fh.attrs["n_replicas"] = n_replicas
    for key in ("step", "epoch", "sync", "model", "method"):
        fh.attrs[key] = meta[key]
    fh.attrs["config"] = json.dumps(meta.get("config", {}), sort_keys=True)
    fh.attrs["loop"] = meta.get("loop", "{}")  # loop counters and clocks, JSON
    versions = {"parle_hpc": __version__, "torch": torch.__version__, "h5py": h5py.__version__,
                "hdf5": h5py.version.hdf5_version, "python": platform.python_version(),
                "numpy": np.__version__}
    # Only when MPI is already up: importing mpi4py.MPI here would start MPI on rank 0
    # alone (a hang under srun --mpi=pmix, an abort under srun without PMI).
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        versions["mpi"] = mpi.Get_library_version().splitlines()[0].strip().rstrip("\x00")
    fh.attrs["versions"] = json.dumps(versions, sort_keys=True)


def _create(group: h5py.Group, name: str, array: np.ndarray, checksum: bool) -> h5py.Dataset:
    if checksum and array.ndim > 0 and array.size > 0:
        ds = group.create_dataset(name, data=array, fletcher32=True)
    else:
        ds = group.create_dataset(name, data=array)
    ds.attrs["sha256"] = _sha256(array)
    return ds


def _write_gathered(tmp: Path, comm, replica: ReplicaState, reference: dict[str, np.ndarray],
                    meta: dict[str, Any]) -> str | None:
    """Rank 0 writes; replicas arrive one at a time. Returns rank 0's error text or None.

    A write error on rank 0 does not stop it from taking part in the remaining broadcasts,
    so the ranks stay in step and all learn of the failure together.
    """
    error: str | None = None
    fh = None
    template = replica.arrays
    try:
        if comm.rank == 0:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            fh = h5py.File(tmp, "w")
            _write_root(fh, meta, comm.size)
            for key, array in reference.items():
                _create(fh, f"reference/{key}", array, True)
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    for k in range(comm.size):
        floats, ints = _pack(template)
        comm.broadcast_(floats, root=k)
        comm.broadcast_(ints, root=k)
        attrs = comm.broadcast_object(replica.attrs, root=k)
        if fh is None or error is not None:
            continue
        try:
            for key, array in _unpack(template, floats, ints).items():
                _create(fh, f"replicas/{k}/{key}", array, True)
            for group, values in attrs.items():
                grp = fh.require_group(f"replicas/{k}/{group}")
                for name, value in values.items():
                    grp.attrs[name] = value
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
    if fh is not None:
        try:
            fh.close()
        except OSError as exc:
            error = error or f"{type(exc).__name__}: {exc}"
    return error


def _write_parallel(tmp: Path, mpi_comm, comm, replica: ReplicaState,
                    reference: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """All ranks write one file through the mpio driver (metadata calls are collective, so
    every rank creates every dataset and attribute with identical values)."""
    hashes = [comm.broadcast_object({k: _sha256(a) for k, a in replica.arrays.items()}, root=k)
              for k in range(comm.size)]
    all_attrs = [comm.broadcast_object(replica.attrs, root=k) for k in range(comm.size)]
    ref_meta = comm.broadcast_object({k: (a.shape, a.dtype.str, _sha256(a)) for k, a in reference.items()}
                                     if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        tmp.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w", driver="mpio", comm=mpi_comm) as fh:
        _write_root(fh, meta, comm.size)
        ref_sets = {}
        for key, (shape, dtype, digest) in ref_meta.items():
            ref_sets[key] = fh.create_dataset(f"reference/{key}", shape=shape, dtype=np.dtype(dtype))
            ref_sets[key].attrs["sha256"] = digest
        mine = {}
        for k in range(comm.size):
            for key, array in replica.arrays.items():
                ds = fh.create_dataset(f"replicas/{k}/{key}", shape=array.shape, dtype=array.dtype)
                ds.attrs["sha256"] = hashes[k][key]
                if k == comm.rank:
                    mine[key] = ds
            for group, values in all_attrs[k].items():
                grp = fh.require_group(f"replicas/{k}/{group}")
                for name, value in values.items():
                    grp.attrs[name] = value
        for key, ds in mine.items():  # independent I/O: each rank its own replica
            if replica.arrays[key].size:
                ds[...] = replica.arrays[key]
        if comm.rank == 0:
            for key, ds in ref_sets.items():
                if reference[key].size:
                    ds[...] = reference[key]


def _pack(arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    floats = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).reshape(-1)
              for a in arrays.values() if a.dtype.kind == "f"]
    ints = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).reshape(-1)
            for a in arrays.values() if a.dtype.kind != "f"]
    f = torch.cat(floats) if floats else torch.zeros(0, dtype=torch.float64)
    i = torch.cat(ints) if ints else torch.zeros(0, dtype=torch.int64)
    return f.clone(), i.clone()


def _unpack(template: dict[str, np.ndarray], f: torch.Tensor, i: torch.Tensor) -> dict[str, np.ndarray]:
    out, fo, io = {}, 0, 0
    for key, a in template.items():
        n = a.size
        if a.dtype.kind == "f":
            out[key] = f[fo:fo + n].numpy().astype(a.dtype).reshape(a.shape)
            fo += n
        else:
            out[key] = i[io:io + n].numpy().astype(a.dtype).reshape(a.shape)
            io += n
    return out


def _fsync(path: Path) -> None:
    """fsync a file, or a directory (so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- reading
def validate_checkpoint(path: str | Path) -> str | None:
    """None when ``path`` is a complete, uncorrupted checkpoint; else the reason it is not.

    Reads every dataset and compares its SHA-256 with the stored one (Fletcher-32 errors
    and truncation surface as read errors).
    """
    try:
        with h5py.File(path, "r") as fh:
            if fh.attrs.get("format") != FORMAT:
                return "not a parle_hpc checkpoint (format attribute missing)"
            if int(fh.attrs.get("version", -1)) > VERSION:
                return f"written by a newer format version {fh.attrs['version']}"
            n = int(fh.attrs["n_replicas"])
            if "reference" not in fh or sorted(fh["replicas"].keys(), key=int) != [str(k) for k in range(n)]:
                return "missing groups"
            bad: list[str] = []

            def check(name: str, obj) -> None:
                if isinstance(obj, h5py.Dataset) and _sha256(obj[()]) != obj.attrs.get("sha256"):
                    bad.append(name)

            fh.visititems(check)
            if bad:
                return f"checksum mismatch in {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
    except (OSError, KeyError, ValueError) as exc:
        return f"unreadable: {exc}"
    return None


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory``, newest first (names carry the step)."""
    return sorted(Path(directory).glob("ckpt-*.h5"), reverse=True)


def latest_valid_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint in ``directory`` that validates; invalid ones are skipped with a
    warning."""
    for path in list_checkpoints(directory):
        reason = validate_checkpoint(path)
        if reason is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, reason)
    return None


def read_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as fh:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}
    attrs["config"] = json.loads(attrs["config"])
    attrs["versions"] = json.loads(attrs.get("versions", "{}"))
    return attrs


def read_group(path: str | Path, group: str) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Arrays (relative path -> array) and attributes (relative group -> attrs) under ``group``."""
    arrays: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as fh:
        root = fh[group]

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                arrays[name] = np.asarray(obj[()])
            elif len(obj.attrs):
                attrs[name] = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v)
                               for k, v in obj.attrs.items()}

        root.visititems(visit)
    return arrays, attrs


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The whole checkpoint as plain dicts of NumPy arrays (for analysis and tools)."""
    attrs = read_attrs(path)
    out: dict[str, Any] = {"attrs": attrs, "reference": read_group(path, "reference")[0],
                           "replicas": {}}
    for k in range(int(attrs["n_replicas"])):
        out["replicas"][k] = read_group(path, f"replicas/{k}")[0]
    return out


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest ``ckpt-*.h5`` in ``directory`` by name (not validated), or None."""
    files = list_checkpoints(directory)
    return files[0] if files else None
