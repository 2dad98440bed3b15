"""``parle-train`` plus a dump of every rank's communicator counters (benchmarks 3 and 4).

    mpirun -np 2 python -m benchmarks.train_stats STATS_DIR -- --config C.yaml KEY=VALUE ...

runs exactly ``parle-train ARGS`` (same entry point, same process) and, when the run closes
its communicator, writes ``STATS_DIR/comm-stats-rank<k>.json`` with that rank's
``comm.stats`` (calls, bytes and seconds per collective). The training loop does not
record bytes anywhere, and ``create`` is the one place every backend's communicator
passes through, so it is wrapped here rather than changed in the package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _install(stats_dir: Path) -> None:
    import parle_hpc.comm as comm_module

    create = comm_module.create

    def create_and_record(*args, **kwargs):
        comm = create(*args, **kwargs)
        close = comm.close

        def close_and_dump() -> None:
            # Before close(): the torch backend's exit path ends the process right after it.
            path = stats_dir / f"comm-stats-rank{comm.rank}.json"
            path.write_text(json.dumps({"rank": comm.rank, "size": comm.size,
                                        "backend": comm.name, **comm.stats.snapshot()}) + "\n")
            close()

        comm.close = close_and_dump
        return comm

    # parle_hpc.cli imports `create` from parle_hpc.comm when it runs: patch it there.
    comm_module.create = create_and_record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m benchmarks.train_stats STATS_DIR -- PARLE_TRAIN_ARGS...",
              file=sys.stderr)
        return 2
    stats_dir = Path(argv[0])
    stats_dir.mkdir(parents=True, exist_ok=True)
    _install(stats_dir)
    from parle_hpc.cli import train_main

    return train_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main())
