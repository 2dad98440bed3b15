"""The benchmark runner: ``python -m benchmarks`` (full) or ``python -m benchmarks --quick``.

Runs the six benchmarks in order, writes one JSON per benchmark and ``summary.json`` to
``benchmarks/results/<mode>/``, and renders the report (full mode: ``docs/benchmarks.md``
with ``docs/img/bench-*.png``; quick mode: ``benchmarks/results/quick/benchmarks.md``, so
the CI smoke run never rewrites the published numbers). A benchmark that fails is
recorded with its error and the others still run; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (checkpoint_io, comm_volume, optimizer_cost, overlap_time, sync_cost,
               time_to_accuracy)
from .common import ROOT, Context, machine_info, read_json, write_json

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "optimizer": lambda ctx, results: optimizer_cost.run(ctx),
    "sync": lambda ctx, results: sync_cost.run(ctx),
    "time_to_accuracy": time_to_accuracy.run,
    "comm_volume": comm_volume.run,   # reads the runs of time_to_accuracy (or makes its own)
    "checkpoint": checkpoint_io.run,
    "overlap": overlap_time.run,
}
SUMMARY_KEYS = ("mode", "machine", "started", "runtime_s", "command", "benchmarks")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: every benchmark, tiny sizes, under ~2 minutes")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default benchmarks/results/<mode>)")
    p.add_argument("--report", type=Path, default=None,
                   help="report path (default docs/benchmarks.md in full mode, OUT/benchmarks.md quick)")
    p.add_argument("--report-only", action="store_true",
                   help="re-render the report from the JSON already in OUT, run nothing")
    return p


class _Tee:
    """Print and keep a copy in OUT/log.txt (the report quotes nothing it cannot show)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "w", buffering=1)

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self._fh.write(line + "\n")

    def close(self) -> None:
        self._fh.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = "quick" if args.quick else "full"
    out = (args.out or ROOT / "benchmarks" / "results" / mode).resolve()
    report = args.report or (out / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    img_dir = report.parent / "img"
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    if args.report_only:
        from .report import render

        print(render(out, report, img_dir))
        return 0

    log = _Tee(out / "log.txt")
    ctx = Context(quick=args.quick, out_dir=out, log=log)
    command = "python -m benchmarks" + (" --quick" if args.quick else "") + \
        (f" --only {args.only}" if args.only else "")
    summary: dict[str, Any] = {"mode": mode, "machine": machine_info(),
                               "started": _dt.datetime.now().isoformat(timespec="seconds"),
                               "runtime_s": None, "command": command, "benchmarks": {}}
    log(f"benchmarks ({mode} mode) -> {out}")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    failed = []
    for name in names:
        t0 = time.perf_counter()
        try:
            result = BENCHMARKS[name](ctx, results)
        except Exception as exc:  # noqa: BLE001 - record it, run the other benchmarks
            failed.append(name)
            log(f"[{name}] FAILED: {exc}")
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}", "ratio": float("nan"),
                      "ratio_name": "failed"}
        result["seconds"] = time.perf_counter() - t0
        results[name] = result
        write_json(out / f"{name}.json", result)
        summary["benchmarks"][name] = {"ratio": result.get("ratio"),
                                       "ratio_name": result.get("ratio_name"),
                                       "seconds": result["seconds"], "file": f"{name}.json",
                                       **({"error": result["error"]} if "error" in result else {})}
    summary["runtime_s"] = time.perf_counter() - started
    summary["load_average_at_end"] = list(os.getloadavg())
    write_json(out / "summary.json", summary)
    log(f"all done in {summary['runtime_s']:.0f}s; results in {out}")
    try:
        from .report import render

        log(f"report: {render(out, report, img_dir)}")
    except Exception as exc:  # noqa: BLE001
        failed.append("report")
        log(f"report FAILED: {exc}")
        traceback.print_exc()
    log.close()
    return 1 if failed else 0


def load_results(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, {benchmark: result}) from a results directory."""
    summary = read_json(out / "summary.json")
    results = {name: read_json(out / info["file"]) for name, info in summary["benchmarks"].items()
               if (out / info["file"]).is_file()}
    return summary, results
