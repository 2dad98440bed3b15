"""metrics.jsonl: one JSON object per line, written by rank 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


class MetricsWriter:
    """Appends records to ``RUN_DIR/metrics.jsonl`` (a no-op on ranks other than 0)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self._fh = open(path, "a", buffering=1) if enabled else None  # line-buffered

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drop records past ``step`` (a resumed run rewrites them); return the kept
        validation records."""
        if self._fh is None:
            return []
        self._fh.close()
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)
        self._fh = open(self.path, "a", buffering=1)
        return [r for r in kept if r.get("type") == "val"]

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, sort_keys=False) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (a torn last line is ignored)."""
    records = []
    with open(path) as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def spread(comm, values: list[float]) -> list[tuple[float, float]]:
    """(mean, std) over replicas of each local value, with one small allreduce."""
    local = torch.tensor([[v, v * v] for v in values], dtype=torch.float64).reshape(-1)
    comm.allreduce_sum_(local)
    out = []
    for k in range(len(values)):
        mean = float(local[2 * k]) / comm.size
        var = max(0.0, float(local[2 * k + 1]) / comm.size - mean * mean)
        out.append((mean, math.sqrt(var)))
    return out
