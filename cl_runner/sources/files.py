"""Reading data files safely: every fault becomes one DataError line naming the file.

The file system (missing permission, a folder where a file should be), compression (a
truncated gzip, a corrupted deflate stream, a bad CRC) and checksums all end here, so the
family modules never see a raw OSError, EOFError or zlib.error. Label and image-shape
checks live here too: they are what keeps a damaged file loaded with verify=false from
reaching training (a label 255 would otherwise crash or silently drop examples).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from .registry import RemoteFile

# What a damaged compressed stream raises (gzip.BadGzipFile is an OSError: "Not a gzipped
# file", "CRC check failed").
COMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
REFETCH = "delete it and fetch it again"


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a fault while reading `path` into one DataError line naming it."""
    try:
        yield
    except COMPRESSION_ERRORS as err:
        raise DataError(f"{path} is unreadable: damaged ({err}); {REFETCH}") from None
    except OSError as err:
        raise DataError(f"{path} is unreadable ({err.strerror or err}); check that it is a readable file") from None


def exists(path: Path) -> bool:
    with reading(path):
        return path.exists()


def check_folder(root: Path, what: str) -> bool:
    """Whether the data folder exists; DataError if it is a file (it could never hold the data)."""
    if not exists(root):
        return False
    if not root.is_dir():
        raise DataError(f"data.root {root} is a file, not a folder: it must be the folder holding the {what} files")
    return True


def read_bytes(path: Path) -> bytes:
    with reading(path):
        return path.read_bytes()


def gunzip(data: bytes, path: Path) -> bytes:
    with reading(path):
        return gzip.decompress(data)


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with reading(path), open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of_content(path: Path, gzipped: bool) -> str:
    """MD5 of a gzipped file's content, streamed (gzipped=False: of the file as it is)."""
    digest = hashlib.md5(usedforsecurity=False)
    with reading(path), (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum(path: Path, remote: RemoteFile) -> str:
    """The MD5 of the file at `path` (saved as `remote.name`) that `remote.md5` is to be compared with."""
    if remote.md5_of == "content":
        return md5_of_content(path, gzipped=remote.name.endswith(".gz"))
    return md5_of_file(path)


def check_md5(digest: str, expected: str, path: Path, of: str = "file") -> None:
    if digest != expected:
        raise DataError(f"{path} fails its checksum (md5 of the {of} {digest}, expected {expected}): "
                        f"it is truncated or altered; {REFETCH}")


def check_labels(values: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    """int64 labels [N], each in [0, num_classes) (num_classes None: any label >= 0)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per example, got an array of shape {values.shape}")
    if values.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got {values.dtype}")
    if values.size:
        low, high = int(values.min()), int(values.max())
        top = num_classes - 1 if num_classes is not None else None
        if low < 0 or (top is not None and high > top):
            allowed = f"0..{top}" if top is not None else ">= 0"
            bad = low if low < 0 else high
            raise DataError(f"{where}: label {bad} is out of range (allowed {allowed}); the file is damaged or not "
                            f"this data set's")
    return values.astype(np.int64, copy=False)


def check_lengths(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{where}: no examples")


def check_image_shape(images: np.ndarray, shape: tuple[int, int, int], where: str) -> None:
    if images.shape[1:] != shape:
        raise DataError(f"{where}: images of shape {images.shape[1:]} (C, H, W), expected {shape}")
