"""The mnist5k digits that ship inside the package, unpacked once into a cache."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path

_PACKAGED = Path(__file__).with_name("mnist5k")


def cache_dir() -> Path:
    """``$PARLE_HPC_CACHE``, else ``$XDG_CACHE_HOME/parle_hpc`` (default ``~/.cache/parle_hpc``)."""
    base = os.environ.get("PARLE_HPC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "parle_hpc")
    return Path(base)


def mnist5k_root(cache: Path | None = None) -> Path:
    """Unpack the packaged mnist5k digits (once, checksummed) and return a torchvision root.

    Safe when several ranks call it at once: each file is written to a temporary name and
    renamed into place.
    """
    root = (cache or cache_dir()) / "mnist5k"
    raw = root / "MNIST" / "raw"
    expected = dict(line.split()[::-1] for line in
                    (_PACKAGED / "SHA256SUMS").read_text().splitlines() if line.strip())
    raw.mkdir(parents=True, exist_ok=True)
    for name, digest in expected.items():
        target = raw / name
        if target.is_file() and target.stat().st_size > 0 and _sha256(target) == digest:
            continue
        data = gzip.decompress((_PACKAGED / f"{name}.gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"packaged mnist5k file {name} is corrupt (checksum mismatch)")
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
