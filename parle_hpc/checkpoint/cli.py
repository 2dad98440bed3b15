"""``parle-ckpt``: inspect a checkpoint, or export one model of it for use elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .hdf5 import read_attrs, read_group, validate_checkpoint


def _summary(path: Path) -> tuple[str, bool]:
    reason = validate_checkpoint(path)
    lines = [f"{path}  ({path.stat().st_size / 2**20:.2f} MiB)",
             f"  valid:      {'yes' if reason is None else 'NO - ' + reason}"]
    try:
        attrs = read_attrs(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not raised
        lines.append(f"  unreadable: {exc}")
        return "\n".join(lines), False
    cfg = attrs["config"]
    lines += [f"  format:     {attrs['format']} v{attrs['version']}",
              f"  model:      {attrs['model']}   method: {attrs['method']}",
              f"  progress:   step {attrs['step']}, epoch {float(attrs['epoch']):.3f}, sync {attrs['sync']}",
              f"  replicas:   {attrs['n_replicas']}"]
    if cfg:
        parle, optim, data = cfg.get("parle", {}), cfg.get("optim", {}), cfg.get("data", {})
        lines.append(f"  config:     L={parle.get('L')} lr={optim.get('lr')} "
                     f"schedule={optim.get('lr_schedule')} data={data.get('name')} "
                     f"batch={data.get('batch_size')} epochs={cfg.get('train', {}).get('epochs')}")
    if reason is None:
        params, _ = read_group(path, "reference/params")
        n = sum(a.size for a in params.values())
        lines.append(f"  parameters: {n:,} per model in {len(params)} tensors")
    lines.append(f"  versions:   {json.dumps(attrs['versions'], sort_keys=True)}")
    return "\n".join(lines), reason is None


def export_state_dict(path: Path, which: str) -> dict[str, np.ndarray]:
    """``which`` = ``reference`` or a replica index: its parameters and buffers by name."""
    group = "reference" if which == "reference" else f"replicas/{int(which)}"
    arrays, _ = read_group(path, group)
    out = {}
    for key, array in arrays.items():
        kind, _, name = key.partition("/")
        if kind in ("params", "buffers"):
            out[name] = array
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="parle-ckpt", description="Inspect or export parle_hpc checkpoints.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ins = sub.add_parser("inspect", help="summary and validity of checkpoint files (exit 1 if any is invalid)")
    ins.add_argument("files", nargs="+", type=Path)
    exp = sub.add_parser("export", help="write one model's state_dict as .pt or .safetensors")
    exp.add_argument("file", type=Path)
    exp.add_argument("--replica", default="reference", help="'reference' (default) or a replica index")
    exp.add_argument("--out", required=True, type=Path, help="model.pt or model.safetensors")
    args = p.parse_args(argv)

    if args.cmd == "inspect":
        ok = True
        for f in args.files:
            text, valid = _summary(f)
            print(text)
            ok &= valid
        return 0 if ok else 1

    reason = validate_checkpoint(args.file)
    if reason is not None:
        print(f"parle-ckpt: {args.file} is not a valid checkpoint: {reason}", file=sys.stderr)
        return 1
    if args.replica != "reference" and not args.replica.isdigit():
        print("parle-ckpt: --replica takes 'reference' or an index", file=sys.stderr)
        return 2
    n = int(read_attrs(args.file)["n_replicas"])
    if args.replica != "reference" and int(args.replica) >= n:
        print(f"parle-ckpt: replica {args.replica} does not exist ({n} replicas)", file=sys.stderr)
        return 2
    import torch

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
             export_state_dict(args.file, args.replica).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(args.out), metadata={"source": str(args.file), "replica": args.replica})
    elif args.out.suffix in (".pt", ".pth"):
        torch.save(state, args.out)
    else:
        print("parle-ckpt: --out must end in .pt, .pth or .safetensors", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(state)} tensors, {args.replica}); load it with "
          f"parle_hpc.models.build('{read_attrs(args.file)['model']}').load_state_dict(...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
