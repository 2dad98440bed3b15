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
