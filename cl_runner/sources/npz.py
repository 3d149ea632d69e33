"""The user's own data: one .npz file, named by dataset.path (cl-run dataset=npz dataset.path=FILE) (`load("npz", "my/data.npz")`).

The file holds four arrays: x_train, y_train, x_test, y_test.
- Images: uint8 (0-255), or float (kept as float32 and used as they are, so scale them to
  [0, 1] yourself), in one of three layouts, told apart by one rule:
  [N, H, W] is one channel; a last dimension of 1 or 3 means channels-last [N, H, W, C];
  otherwise a dimension 1 of 1 or 3 means channels-first [N, C, H, W]. Anything else is refused.
- Labels: integers >= 0, shaped [N] (or [N, 1]); the number of classes is the largest + 1.
There is no published checksum and nothing to download, so `verify` and `download` do not
apply; the format checks always do (missing arrays, lengths, dtypes, dimensions, labels).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import check_labels, check_lengths, exists, reading
from .registry import Arrays, RemoteFile, Source, register

KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3)
# What np.load raises for a file that is not an .npz archive, or a damaged one.
NPZ_ERRORS = (ValueError, zipfile.BadZipFile, pickle.UnpicklingError)


def missing(source: Source, root: Path) -> list[RemoteFile]:
    if not exists(root):
        raise DataError(f"npz: {root} not found: dataset.path must be the .npz file holding {', '.join(KEYS)}")
    if root.is_dir():
        raise DataError(f"npz: dataset.path {root} is a folder: it must be the .npz file itself")
    return []


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with reading(path):
            npz = np.load(path, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path} is a single .npy array, not an .npz file holding {', '.join(KEYS)}")
            with npz:
                absent = [key for key in KEYS if key not in npz.files]
                if absent:
                    raise DataError(f"{path} lacks {', '.join(absent)} (it holds: {', '.join(npz.files) or 'nothing'}); "
                                    f"expected {', '.join(KEYS)}")
                return {key: npz[key] for key in KEYS}
    except NPZ_ERRORS as err:
        raise DataError(f"{path} is not a readable .npz file ({err})") from None


def _images(images: np.ndarray, where: str) -> np.ndarray:
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
    return Arrays(**arrays, num_classes=num_classes)


register(Source(
    "npz", None, None, "your own data: one .npz file with x_train, y_train, x_test, y_test (cl-run: dataset.path)",
    "", "yours", (), f"a .npz file holding {', '.join(KEYS)}", missing=missing, decode=decode,
))
