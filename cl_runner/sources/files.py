"""Reading data files safely: every fault becomes one DataError line naming the file.

The file system (missing permission, a folder where a file should be), compression (a
truncated gzip, a corrupted deflate stream, a bad CRC) and checksums all end here, so the
family modules never see a raw OSError, EOFError or zlib.error. Label and image-shape
checks live here too: they are what keeps a damaged file loaded with verify=false from
reaching training (a label 255 would otherwise crash or silently drop examples).

Nothing is allocated before its size is known and bounded: a file is read whole only when it
fits in this machine's memory, a gzip stream is read up to the size its content's own header
declares, and a .npy array (`read_npy`: an npz member, a cached array) only once its header's
shape and dtype account for exactly the bytes the file holds.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import lzma
import math
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from ..capacity import format_bytes, host_memory
from ..errors import DataError
from .registry import RemoteFile

# What a damaged compressed stream raises (gzip.BadGzipFile is an OSError: "Not a gzipped
# file", "CRC check failed"; bz2's "Invalid data stream" is an OSError too).
COMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
REFETCH = "delete it and fetch it again"
# Labels of a data set whose classes are read from it (npz) stay below this: more classes than
# any classification data set has (ImageNet-21k: 21,841), and one output each.
MAX_CLASSES = 100_000
CHUNK = 64 * 2**20  # bytes read at a time into an array already allocated


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


@functools.cache
def _memory() -> int:
    return host_memory().total  # read once: it does not change while a process runs


def check_fits(size: int, path: Path, what: str) -> None:
    """Refuse `size` bytes of `what` in `path` that this machine's memory could never hold."""
    memory = _memory()
    if size > memory:
        raise DataError(f"{path}: {what} takes {format_bytes(size)} ({size:,} bytes), more than this machine's "
                        f"memory ({format_bytes(memory)}); the file is damaged or not what it should be")


def read_bytes(path: Path) -> bytes:
    with reading(path):
        check_fits(path.stat().st_size, path, "the file")
        return path.read_bytes()


def gunzip(data: bytes, path: Path, declared_size: Callable[[bytes], int], head: int = 1024) -> bytes:
    """The content of the gzipped `data`, read only as far as the content's own header declares:
    its first `head` bytes, then up to `declared_size(first bytes)` in all, and one byte more (so a
    content longer than declared shows). Nothing larger than that is ever allocated."""
    with reading(path), gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        content = stream.read(head)
        size = declared_size(content)
        check_fits(size, path, "its content, as its header declares it,")
        return content + stream.read(max(size - len(content), 0) + 1)


def read_npy(stream: BinaryIO, size: int, where: str) -> np.ndarray:
    """The array of the .npy file `stream` (of `size` bytes in all: a cached file, an npz member),
    allocated only once its header's shape and dtype account for exactly the bytes that follow."""
    try:
        version = np.lib.format.read_magic(stream)
        if version not in NPY_HEADERS:
            raise ValueError(f"format version {version[0]}.{version[1]} (numpy writes plain arrays as 1.0 or 2.0)")
        shape, fortran, dtype = NPY_HEADERS[version](stream)
    except (ValueError, SyntaxError, TypeError, EOFError) as err:
        raise DataError(f"{where} is not a .npy array ({err})") from None
    if dtype.hasobject or dtype.fields is not None:
        raise DataError(f"{where}: holds {dtype} values; expected plain numbers (Python objects are never read)")
    declared, held = math.prod(shape) * dtype.itemsize, size - stream.tell()
    if declared != held:
        raise DataError(f"{where}: its header declares a {dtype} array of shape {shape} ({declared:,} bytes), but "
                        f"{held:,} bytes follow it; the file is damaged or cut short")
    check_fits(declared, Path(where), f"its {dtype} array of shape {shape}")
    try:
        buffer = np.empty(declared, np.uint8)
    except MemoryError:
        raise DataError(f"{where}: not enough free memory for its {format_bytes(declared)} array now") from None
    view, filled = memoryview(buffer), 0
    while filled < declared:
        count = stream.readinto(view[filled : filled + CHUNK])
        if not count:
            raise DataError(f"{where}: cut short ({filled:,} of {declared:,} bytes of data)")
        filled += count
    array = buffer.view(dtype)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


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
        low, high = int(values.min()), int(values.max())  # Python ints: a uint64 2^64-1 stays itself
        top = num_classes - 1 if num_classes is not None else MAX_CLASSES - 1
        if low < 0 or high > top:
            allowed = f"0..{top}" if num_classes is not None else f"0..{top}: at most {MAX_CLASSES:,} classes"
            bad = low if low < 0 else high
            raise DataError(f"{where}: label {bad} is out of range (allowed {allowed}); the file is damaged or not "
                            f"this data set's")
    return values.astype(np.int64, copy=False)


def check_lengths(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{where}: no examples")


def check_sides(images: np.ndarray, where: str) -> None:
    """Images [N, C, H, W] with at least one channel and one pixel each way."""
    if 0 in images.shape[1:]:
        raise DataError(f"{where}: images of shape {images.shape[1:]} (C, H, W) have no pixels; expected every side >= 1")


def check_image_shape(images: np.ndarray, shape: tuple[int, int, int], where: str) -> None:
    if images.shape[1:] != shape:
        raise DataError(f"{where}: images of shape {images.shape[1:]} (C, H, W), expected {shape}")
