"""HDF5 checkpoints of all replicas and the reference (no pickles anywhere)."""

from .hdf5 import FORMAT, VERSION, latest_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["FORMAT", "VERSION", "latest_checkpoint", "read_checkpoint", "save_checkpoint"]
