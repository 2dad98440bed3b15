"""One rank of the data-parallel SGD test: its share of each global minibatch.

Usage: python dpsgd_worker.py BACKEND OUT_DIR   (writes OUT_DIR/rank<k>.npz)
"""

import os
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spec_reference import TinyNet, global_batch  # noqa: E402

from parle_hpc.comm import create  # noqa: E402
from parle_hpc.optim import DataParallelSGD  # noqa: E402

STEPS = 20


def main(backend: str, out_dir: str) -> None:
    comm = create(backend)
    try:
        model = TinyNet(comm.rank)  # rank 0's weights are broadcast by the optimizer
        opt = DataParallelSGD(model.parameters(), comm=comm, lr=0.1, momentum=0.9,
                              nesterov=True, weight_decay=1e-3)
        before = comm.stats.calls.get("allreduce", 0)
        for k in range(STEPS):
            x, y = global_batch(k)
            share = len(y) // comm.size
            part = slice(comm.rank * share, (comm.rank + 1) * share)
            opt.zero_grad()
            F.cross_entropy(model(x[part]), y[part]).backward()
            opt.step()
        np.savez(os.path.join(out_dir, f"rank{comm.rank}.npz"), params=opt.flat_params.numpy(),
                 allreduces=comm.stats.calls.get("allreduce", 0) - before)
        comm.barrier()
    except BaseException:
        traceback.print_exc()
        comm.abort(1)
    comm.close()
    if comm.name == "torch":
        from parle_hpc.comm.torch_dist import hard_exit

        hard_exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
