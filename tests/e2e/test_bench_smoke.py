"""The benchmark runner's quick mode end to end (CI smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import run_job

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

BENCHMARKS = ("optimizer", "sync", "time_to_accuracy", "comm_volume", "checkpoint", "overlap")


def test_quick_benchmarks_exit_0_and_write_their_json(tmp_path):
    out, report = tmp_path / "results", tmp_path / "report" / "benchmarks.md"
    res = run_job([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out),
                   "--report", str(report)], timeout=600)
    assert res.returncode == 0, res.stdout[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert {"mode", "machine", "started", "runtime_s", "command", "benchmarks"} <= summary.keys()
    assert summary["mode"] == "quick"
    assert {"nproc", "cpu_model"} <= summary["machine"].keys()
    assert set(summary["benchmarks"]) == set(BENCHMARKS)
    for name, info in summary["benchmarks"].items():
        assert "error" not in info, f"{name}: {info.get('error')}"
        assert {"ratio", "ratio_name", "seconds", "file"} <= info.keys()
        result = json.loads((out / info["file"]).read_text())
        assert "ratio" in result
    assert report.is_file() and "## Headline ratios" in report.read_text()
