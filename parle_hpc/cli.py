"""Entry points: ``parle-train`` and ``parle-plot``. Thin: parse, build, run, clean up."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys

TRAIN_EPILOG = """\
launchers:
  parle-train --config C.yaml                      one process (or one replica)
  parle-train --nproc 3 --config C.yaml            3 local ranks over torch.distributed
  mpirun -np 3 parle-train --config C.yaml         3 ranks under MPI (backend auto: mpi4py on
                                                   CPU, Horovod/NCCL on GPU when built)
  horovodrun -np 3 parle-train --config C.yaml     Horovod (on CPU add dist.backend=horovod;
                                                   --gloo: its gloo controller, picked by auto)
  srun parle-train --config C.yaml                 inside a SLURM allocation
  torchrun --nproc_per_node 3 -m parle_hpc.train --config C.yaml

overrides are dotted keys of the YAML file, e.g.  parle.L=10 optim.lr=0.05 train.epochs=2
backend: dist.backend=auto|single|torch|mpi|horovod (auto prints its choice and why)
signals: SIGUSR2 or SIGTERM (checkpoint.signals) -> checkpoint at the next sync, exit 75
exit codes: 0 done, 1 error, 2 bad configuration or arguments, 3 a replica diverged
            (NaN/Inf; last good checkpoint kept), 75 checkpointed on a signal or the
            wall-time budget: requeue the job and run again with --resume auto
"""


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parle-train", description="Train with Parle (or SGD, Entropy-SGD, Elastic-SGD, data-parallel SGD).",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="YAML run configuration (default: built-in defaults)")
    p.add_argument("--nproc", type=int, default=None,
                   help="start this many local ranks (torch.distributed), for machines without mpirun")
    p.add_argument("--resume", metavar="auto|PATH", default=None,
                   help="continue from the newest valid checkpoint in out_dir/checkpoints (auto; "
                        "a fresh start if there is none) or from PATH")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    return p


def train_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _train_parser().parse_intermixed_args(argv)  # options may follow overrides
    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"parle-train: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if args.nproc is not None:
        from .comm import discover

        if discover().size > 1:
            print("parle-train: --nproc cannot be used inside another launcher "
                  "(mpirun/srun/torchrun already started the ranks)", file=sys.stderr)
            return 2
        from .train.launch import launch

        rest, skip = [], False
        for arg in argv:  # the ranks get the same arguments, less --nproc
            if skip or arg == "--nproc":
                skip = not skip
                continue
            if not arg.startswith("--nproc="):
                rest.append(arg)
        return launch(args.nproc, rest)
    return _run(cfg, args.resume)


def _run(cfg, resume: str | None = None) -> int:
    from .comm import create, discover
    from .checkpoint import CheckpointError
    from .data import DatasetMissing, DatasetUnreadable
    from .train.loop import (EXIT_NONFINITE, EXIT_REQUEUE, NonFiniteError, StopFlag, StopRequested,
                             Trainer, select_device, set_threads, summary_table)

    # Catch the stop signals from the start: a preemption notice that arrives while the
    # data loads or the ranks rendezvous is acted on at the first sync, not lost.
    stop_flag = StopFlag(cfg.checkpoint.signals)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = discover()
    comm = None
    rc = 1
    try:
        device = select_device(cfg.train.device, env.local_rank, env.local_size,
                               cfg.train.gpu_oversubscribe)
        threads = set_threads(cfg.train.threads, env.local_size) if device.type == "cpu" else None
        comm = create(cfg.dist.backend, env=env, device=device,
                      timeout=_dt.timedelta(seconds=cfg.dist.timeout_s))
        if comm.rank == 0:
            print(f"parle_hpc: {comm.size} rank(s), backend {comm.name} "
                  f"({getattr(comm, 'selected_because', 'asked for')})"
                  + (f", {threads} CPU thread(s) per rank" if threads else ""), flush=True)
        trainer = Trainer(cfg, comm, device)
        summary = trainer.fit(resume, stop_flag)
        if comm.rank == 0:
            from .analysis.plots import plot_runs

            png = plot_runs([trainer.out_dir], trainer.out_dir / "error.png")
            summary["plot"] = str(png)
            (trainer.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(summary_table(summary, trainer.history))
            print(f"outputs in {trainer.out_dir}/: config.yaml, metrics.jsonl, summary.json, "
                  f"checkpoints/, {png.name}", flush=True)
        comm.barrier()
        rc = 0
    except StopRequested as stop:  # raised on every rank at the same sync
        rc = EXIT_REQUEUE
        if comm.rank == 0:
            print(f"parle-train: {stop}; exiting with {EXIT_REQUEUE} (requeue, then --resume auto)",
                  flush=True)
    except (NonFiniteError, CheckpointError) as exc:  # agreed by a collective: no abort needed
        rc = EXIT_NONFINITE if isinstance(exc, NonFiniteError) else 1
        if comm is None or comm.rank == 0:
            print(f"parle-train: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:
        rank = comm.rank if comm is not None else env.rank
        if isinstance(exc, (DatasetMissing, DatasetUnreadable)):  # the message says what to do
            if rank == 0:
                print(f"parle-train: {exc}", file=sys.stderr, flush=True)
        else:
            logging.getLogger("parle_hpc").exception("rank %d failed", rank)
        if comm is not None and comm.size > 1:
            comm.abort(1)  # never leave the other ranks blocked in a collective
    finally:
        stop_flag.restore()
        if comm is not None:
            comm.close()
            if comm.name == "torch":
                from .comm.torch_dist import hard_exit

                hard_exit(rc)
    return rc


def plot_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="parle-plot",
                                description="Plot error vs epochs and vs wall-clock for run directories.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--labels", nargs="*", help="legend labels, one per run")
    p.add_argument("--no-train", action="store_true", help="plot validation error only")
    args = p.parse_args(argv)
    from .analysis.plots import plot_runs

    try:
        out = plot_runs(args.runs, args.out, args.labels, train=not args.no_train)
    except FileNotFoundError as exc:
        print(f"parle-plot: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
