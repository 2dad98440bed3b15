"""``parle-data``: stage datasets on a machine with internet access, list what is staged.

    parle-data list [--root DIR]
    parle-data download NAME --root DIR

Run ``download`` on a login node; compute nodes then train with ``data.root=DIR`` and
``data.download: false`` (the default), which never touches the network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .sources import SOURCES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parle-data", description=__doc__.split("\n\n")[0],
                                epilog="mnist5k ships inside the package and needs no download.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{download,list}")
    dl = sub.add_parser("download", help="download and verify a dataset into --root")
    dl.add_argument("name", choices=sorted(SOURCES) + ["mnist5k"], metavar="NAME",
                    help=f"one of {', '.join(sorted(SOURCES))}")
    dl.add_argument("--root", required=True, help="directory to stage it in (data.root)")
    ls = sub.add_parser("list", help="list the datasets (and, with --root, which are staged)")
    ls.add_argument("--root", help="directory to check for staged datasets")
    return p


def _list(root: str | None) -> int:
    print("dataset    download  description")
    print("mnist5k    -         5,000 MNIST digits shipped in the package (offline demos)")
    for name, source in SOURCES.items():
        line = f"{name:<10} {source.download_size:<9} {source.description}"
        if root is not None:
            missing = source.missing(root)
            line += ("  [staged]" if not missing
                     else f"  [missing {len(missing)} of {len(source.files)} files]")
        print(line)
    if root is not None:
        print(f"(checked under {Path(root).expanduser().absolute()})")
    return EXIT_OK


def _download(name: str, root: str) -> int:
    if name == "mnist5k":
        print("parle-data: mnist5k ships inside the package; nothing to download")
        return EXIT_OK
    source = SOURCES[name]
    if not source.missing(root):
        print(f"{name} is already staged in {source.directory(root)} (use the same path as "
              f"data.root; remove it to download again)")
        return EXIT_OK
    try:
        directory = source.stage(root)
    except Exception as exc:  # network, checksum or disk errors: say which and stop
        print(f"parle-data: downloading {name} into {Path(root).expanduser().absolute()} failed: "
              f"{type(exc).__name__}: {exc}\n(this needs internet access: run it on a login "
              "node, then point data.root at the same directory)", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name} staged and verified in {directory}\n"
          f"train with: data.name={name} data.root={Path(root).expanduser().absolute()}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``parle-data``; returns the exit code (0 ok, 1 failed, 2 usage)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 on --help
        return int(exc.code or 0)
    if args.command == "list":
        return _list(args.root)
    return _download(args.name, args.root)


if __name__ == "__main__":
    sys.exit(main())
