"""MNIST from its four IDX files, checked against the canonical checksums.

No torchvision: the IDX format is a short header and raw bytes. Files may be gzipped or
raw; the MD5 of the *uncompressed* content is checked, so any re-compression is accepted
but a truncated or altered file never is. Missing files are downloaded from the public
mirrors when the network allows, otherwise the user is told which files to put where.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.request
from pathlib import Path

import numpy as np

from .errors import DataError

# name -> MD5 of the uncompressed IDX file (as published with the data set).
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
ENV_VAR = "CL_RUNNER_DATA"


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # a truncated gzip stream lands here
        raise DataError(f"MNIST file {path} is unreadable ({err}); delete it and fetch it again") from err


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    # Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
    # then one big-endian uint32 per dimension.
    try:  # with data.verify=false a damaged header must still end in one line, not a traceback
        ndim = data[3]
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    except (IndexError, struct.error, ValueError) as err:
        raise DataError(f"MNIST file {path} is not an IDX file ({err}); delete it and fetch it again") from None
    if data[2] != 0x08 or array.size != int(np.prod(shape)):
        raise DataError(f"MNIST file {path} is not a uint8 IDX file of shape {shape}")
    return array.reshape(shape)


def download(root: Path, timeout: float = 20.0) -> None:
    """Fetch any missing file from the first mirror that answers."""
    root.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if _find(root, name) is not None:
            continue
        last_error: Exception | None = None
        for mirror in MIRRORS:
            target = root / f"{name}.gz"
            partial = target.with_suffix(".gz.part")
            try:
                with urllib.request.urlopen(mirror + f"{name}.gz", timeout=timeout) as response:
                    with open(partial, "wb") as out:
                        shutil.copyfileobj(response, out)
                partial.rename(target)  # never leave a half-written file under the real name
                break
            except OSError as err:
                partial.unlink(missing_ok=True)
                last_error = err
        else:
            raise DataError(
                f"MNIST not found in {root} and the download failed ({last_error}); put the files "
                f"{', '.join(f'{n}.gz' for n in FILES)} (gzipped or raw) there, or set data.root / ${ENV_VAR}"
            )


def check_present(root: Path, allow_download: bool) -> None:
    """Fail fast (before any training) if the data cannot be had."""
    missing = [name for name in FILES if _find(root, name) is None]
    if not missing:
        return
    if allow_download:
        download(root)
        return
    raise DataError(
        f"MNIST not found in {root}: expected the files {', '.join(f'{n}.gz' for n in FILES)} "
        f"(gzipped or raw; missing: {', '.join(missing)}); run `make data` or set data.root / ${ENV_VAR}"
    )


def load(root: str | os.PathLike, allow_download: bool = True, verify: bool = True) -> dict[str, np.ndarray]:
    """Return {'train_x', 'train_y', 'test_x', 'test_y'} as uint8 arrays (images N x 28 x 28).

    `verify=False` skips the checksums; only for tiny generated IDX files in tests.
    """
    root = Path(root).expanduser()
    check_present(root, allow_download)
    arrays = {}
    for key, name in (
        ("train_x", "train-images-idx3-ubyte"),
        ("train_y", "train-labels-idx1-ubyte"),
        ("test_x", "t10k-images-idx3-ubyte"),
        ("test_y", "t10k-labels-idx1-ubyte"),
    ):
        path = _find(root, name)
        data = _read_bytes(path)
        digest = hashlib.md5(data).hexdigest()
        if verify and digest != FILES[name]:
            raise DataError(
                f"MNIST file {path} fails its checksum (md5 {digest}, expected {FILES[name]}): "
                "it is truncated or altered; delete it and fetch it again"
            )
        arrays[key] = _parse_idx(data, path)
    return arrays


def main() -> None:
    """`python -m cl_runner.mnist [FOLDER]`: fetch what is missing, then verify every file."""
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(ENV_VAR, "data/mnist"))
    try:
        arrays = load(root)
    except DataError as err:
        sys.exit(f"error: {err}")
    print(f"MNIST in {root}: {len(arrays['train_y'])} training and {len(arrays['test_y'])} test images, checksums OK")


if __name__ == "__main__":
    main()
