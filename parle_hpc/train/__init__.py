"""The training loop (``python -m parle_hpc.train`` = ``parle-train``)."""

EXIT_REQUEUE = 75   # checkpoint written on a signal or the wall-time budget: requeue, then --resume auto
EXIT_NONFINITE = 3  # a replica diverged (NaN/Inf); the last good checkpoint is kept
