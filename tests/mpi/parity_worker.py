"""One rank of the spec-parity test: trains TinyNet with Parle and saves its state.

Usage (under any launcher):  python parity_worker.py BACKEND L OUT_DIR
Each rank writes OUT_DIR/rank<k>.npz: its anchor, iterate, the reference and the number
of allreduce calls. A failure on any rank aborts the whole job (no hang).
"""

import os
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spec_reference import OUTER_STEPS, SETTING, TinyNet, make_batch  # noqa: E402

from parle_hpc.comm import create  # noqa: E402
from parle_hpc.optim import Parle  # noqa: E402


def main(backend: str, L: int, out_dir: str) -> None:
    comm = create(backend)
    try:
        model = TinyNet(comm.rank)
        s = SETTING
        opt = Parle(model.parameters(), comm=comm, lr=s["lr"], inner_lr=s["inner_lr"], L=L,
                    gamma0=s["gamma0"], gamma_max=s["gamma_max"], rho0=s["rho0"],
                    rho_max=s["rho_max"], scoping=s["scoping"], batches_per_epoch=s["B"],
                    alpha=s["alpha"], momentum=s["mu"], nesterov=True, weight_decay=s["wd"])
        calls_before = comm.stats.calls.get("allreduce", 0)
        for k in range(OUTER_STEPS * max(L, 1)):
            x, y = make_batch(comm.rank, k)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        state = opt.state_dict()["buffers"]
        np.savez(os.path.join(out_dir, f"rank{comm.rank}.npz"),
                 anchor=state["anchor"].numpy(), iterate=opt.flat_params.numpy(),
                 reference=opt.reference_flat.numpy(), backend=comm.name, size=comm.size,
                 construct_allreduces=calls_before,
                 allreduces=comm.stats.calls.get("allreduce", 0) - calls_before,
                 outer_step=opt.outer_step)
        comm.barrier()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        comm.abort(1)
    comm.close()
    if comm.name == "torch":
        from parle_hpc.comm.torch_dist import hard_exit

        hard_exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
