"""Data sources: the data sets cl-runner trains on, read from their official files.

    from cl_runner import sources
    arrays = sources.load("cifar10", "data/cifar10", download=True, verify=True)
    arrays.train_x  # uint8 [N, C, H, W]; arrays.train_y: int64 [N] in [0, arrays.num_classes)

`SOURCES` maps each name to its `Source` (classes, image shape, homepage, licence, and the
files with their official URLs, sizes and checksums). One module per family registers its
sources: idx (mnist, fashion_mnist, kmnist), cifar (cifar10, cifar100), npz (the user's own
file, named by `root` itself). `python -m cl_runner.sources NAME FOLDER` fetches and checks one.

A folder's decoded arrays are cached beside its files (`cache`: checked against the files'
sizes and times and by a fast hash, rebuilt when they change), so later runs skip the
decompression, checksums and parsing.

Every problem with the data (missing, unreadable, damaged, wrong checksum, labels out of
range, a failed download) raises DataError with one line naming the absolute path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, DataError
from . import idx, cifar, npz  # noqa: F401, I001 - importing a family registers its sources (listed in this order)
from . import cache
from .download import MIRROR_ENV, fetch
from .registry import SOURCES, Arrays, RemoteFile, Source

__all__ = ["SOURCES", "Arrays", "RemoteFile", "Source", "load", "DATA_ENV", "MIRROR_ENV"]
DATA_ENV = "CL_RUNNER_DATA"  # the default data.root is $CL_RUNNER_DATA/<source>


def load(name: str, root: str | os.PathLike, download: bool = True, verify: bool = True,
         mirror: str | None = None, cached: bool = True) -> Arrays:
    """The data set `name` from the folder `root` (for npz: the file), fetching missing files first.

    download=False: a missing file is an error. verify=False skips the checksums of the files
    found (only for generated test data); downloads are always checked, and the format checks
    (shapes, labels in range) always apply. `mirror` (else $CL_RUNNER_MIRROR) replaces the
    official URLs: a folder or a base URL holding the files under their usual names.
    cached=False reads and checks the files even where the cache of decoded arrays is valid.
    """
    source = SOURCES.get(name)
    if source is None:
        raise ConfigError("data source", name, f"one of {', '.join(SOURCES)}")
    root = Path(root).expanduser().absolute()
    missing = source.missing(source, root)
    if missing:
        if not download:
            raise DataError(
                f"{name} not found in {root}: expected {source.expects} (missing: "
                f"{', '.join(f.name for f in missing)}); run `make data DATASET={name}`, or set data.root / ${DATA_ENV}"
            )
        fetch(source, missing, root, mirror)
    return cache.decoded(source, root, verify, read=cached)
