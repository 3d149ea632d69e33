"""The user's own data: one .npz file, named by dataset.path (cl-run dataset=npz dataset.path=FILE) (`load("npz", "my/data.npz")`).

The file holds four arrays: x_train, y_train, x_test, y_test.
- Images: uint8 (0-255), or float (kept as float32 and used as they are, so scale them to
  [0, 1] yourself), in one of three layouts, told apart by one rule:
  [N, H, W] is one channel; a last dimension of 1 or 3 means channels-last [N, H, W, C];
  otherwise a dimension 1 of 1 or 3 means channels-first [N, C, H, W]. Anything else is refused.
- Labels: integers >= 0, shaped [N] (or [N, 1]); the number of classes is the largest + 1.
There is no published checksum and nothing to download, so `verify` and `download` do not
apply; the format checks always do (missing arrays, lengths, dtypes, dimensions, labels).

The archive is read member by member with zipfile, not np.load: each member must be a `.npy`
file stored in a way zipfile can decompress (stored, deflate, bzip2, lzma; not encrypted),
and its array is allocated only once its header accounts for the member's size
(`files.read_npy`), so a damaged or hostile file ends in one line, never in a traceback or an
allocation of what its header merely claims.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import check_labels, check_lengths, check_sides, exists, read_npy, reading
from .registry import Arrays, RemoteFile, Source, register

KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3)
# The compressions zipfile decompresses (others, such as deflate64, raise NotImplementedError).
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
           zipfile.ZIP_LZMA: "lzma"}
ENCRYPTED = 0x1 | 0x40  # the zip flags of traditional and of strong encryption
NPY_MAGIC = b"\x93NUMPY"


def missing(source: Source, root: Path) -> list[RemoteFile]:
    if not exists(root):
        raise DataError(f"npz: {root} not found: dataset.path must be the .npz file holding {', '.join(KEYS)}")
    if root.is_dir():
        raise DataError(f"npz: dataset.path {root} is a folder: it must be the .npz file itself")
    return []


def _read(path: Path) -> dict[str, np.ndarray]:
    with reading(path):
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as file:
                single = file.read(len(NPY_MAGIC)) == NPY_MAGIC
            raise DataError(f"{path} is a single .npy array, not an .npz file holding {', '.join(KEYS)}" if single else
                            f"{path} is not a readable .npz file (not a zip archive)")
        try:
            with zipfile.ZipFile(path) as archive:
                members = _members(archive, path)
                return {key: _array(archive, info, f"{path}: {info.filename}") for key, info in members.items()}
        except zipfile.BadZipFile as err:  # a member's CRC or size does not match its bytes
            raise DataError(f"{path} is not a readable .npz file ({err})") from None


def _members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip entries of the four arrays, each one zipfile can read; DataError otherwise."""
    entries = {info.filename: info for info in archive.infolist()}
    absent = [key for key in KEYS if f"{key}.npy" not in entries]
    if absent:
        raise DataError(f"{path} lacks {', '.join(absent)} (it holds: {', '.join(entries) or 'nothing'}); expected "
                        f"{', '.join(f'{key}.npy' for key in KEYS)}")
    members = {key: entries[f"{key}.npy"] for key in KEYS}
    for info in members.values():
        if info.compress_type not in METHODS:
            raise DataError(f"{path}: {info.filename} is compressed with zip method {info.compress_type}, which cannot be "
                            f"read here (allowed: {', '.join(METHODS.values())}); save it with np.savez or np.savez_compressed")
        if info.flag_bits & ENCRYPTED:
            raise DataError(f"{path}: {info.filename} is encrypted; save the arrays without a password (np.savez)")
    return members


def _array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    with archive.open(info) as stream:
        return read_npy(stream, info.file_size, where)


def _images(images: np.ndarray, where: str) -> np.ndarray:
    """Images [N, C, H, W] from one of the three layouts, each side at least 1."""
    images = _layout(images, where)
    check_sides(images, where)
    return images


def _layout(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype.kind == "f":
        images = images.astype(np.float32, copy=False)
        if not np.isfinite(images).all():
            raise DataError(f"{where}: images hold NaN or infinite values")
    elif images.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 or float, got {images.dtype}")
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[3] in CHANNELS:
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if images.ndim == 4 and images.shape[1] in CHANNELS:
        return images
    raise DataError(f"{where}: images of shape {images.shape}: expected [N, H, W], [N, H, W, C] or [N, C, H, W] "
                    f"with C 1 or 3")


def decode(source: Source, root: Path, verify: bool) -> Arrays:
    raw = _read(root)
    arrays = {}
    for split in ("train", "test"):
        images, labels = raw[f"x_{split}"], raw[f"y_{split}"]
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        check_lengths(images, labels, f"{root}: x_{split} and y_{split}")
        arrays[f"{split}_x"] = _images(images, f"{root}: x_{split}")
        arrays[f"{split}_y"] = check_labels(labels, None, f"{root}: y_{split}")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise DataError(f"{root}: x_train images are {arrays['train_x'].shape[1:]} (C, H, W) but x_test "
                        f"{arrays['test_x'].shape[1:]}")
    if arrays["train_x"].dtype != arrays["test_x"].dtype:
        raise DataError(f"{root}: x_train is {arrays['train_x'].dtype} but x_test {arrays['test_x'].dtype}")
    num_classes = int(max(arrays["train_y"].max(), arrays["test_y"].max())) + 1
    if num_classes < 2:
        raise DataError(f"{root}: every label in y_train and y_test is 0: a classifier needs at least two classes")
    return Arrays(**arrays, num_classes=num_classes)


register(Source(
    "npz", None, None, "your own data: one .npz file with x_train, y_train, x_test, y_test (cl-run: dataset.path)",
    "", "yours", (), f"a .npz file holding {', '.join(KEYS)}", missing=missing, decode=decode,
))
