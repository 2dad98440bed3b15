"""HDF5 checkpoints of all replicas and the reference (no pickles anywhere)."""

from .hdf5 import (FORMAT, VERSION, CheckpointError, ReplicaState, latest_checkpoint,
                   latest_valid_checkpoint, list_checkpoints, read_attrs, read_checkpoint,
                   read_group, remove_stale_temporaries, save_checkpoint,
                   validate_checkpoint)
from .state import capture_replica, reference_arrays, restore_replica

__all__ = ["FORMAT", "VERSION", "CheckpointError", "ReplicaState", "capture_replica",
           "latest_checkpoint", "latest_valid_checkpoint", "list_checkpoints", "read_attrs",
           "read_checkpoint", "read_group", "reference_arrays", "remove_stale_temporaries", "restore_replica",
           "save_checkpoint", "validate_checkpoint"]
