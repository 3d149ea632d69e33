"""`python -m cl_runner.sources NAME [FOLDER] [--mirror DIR_OR_URL]`: fetch what is missing, then check it all.

`make data DATASET=NAME` runs this. Exit 0 when the data set is complete and passes its
checksums (always read and checked in full here; the runs' cache of decoded arrays is
rewritten); exit 3 with one line on stderr when it cannot be had. `--list` shows the sources.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_DATA, DataError
from . import MIRROR_ENV, SOURCES, load


def _listing() -> str:
    rows = [f"{'name':<14} {'classes':>7} {'C,H,W':<9} {'download':>9}  description; licence; homepage"]
    for s in SOURCES.values():
        shape = ",".join(map(str, s.shape)) if s.shape else "any"
        size = f"{s.download_bytes / 1e6:.1f} MB" if s.files else "-"
        rows.append(f"{s.name:<14} {s.num_classes or 'any':>7} {shape:<9} {size:>9}  "
                    f"{s.description}; {s.licence}; {s.homepage or '-'}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cl_runner.sources", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=list(SOURCES), help="the data set")
    parser.add_argument("folder", nargs="?", help="its data folder (default data/NAME); for npz, the .npz file")
    parser.add_argument("--mirror", help=f"a folder or base URL to fetch from instead of the official URLs "
                                         f"(default ${MIRROR_ENV})")
    parser.add_argument("--list", action="store_true", help="list the sources, with sizes and licences")
    args = parser.parse_args(argv)
    if args.list:
        print(_listing())
        return
    if args.name is None:
        parser.error("give a data set NAME (or --list)")
    folder = Path(args.folder or f"data/{args.name}").expanduser().absolute()
    try:
        arrays = load(args.name, folder, download=True, verify=True, mirror=args.mirror, cached=False)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_DATA)
    checked = "checksums OK" if SOURCES[args.name].files else "format checked (a user's file has no checksum)"
    print(f"{args.name} in {folder}: {len(arrays.train_y)} training and {len(arrays.test_y)} test images of shape "
          f"{tuple(arrays.train_x.shape[1:])}, {arrays.num_classes} classes; {checked}")


if __name__ == "__main__":
    main()
