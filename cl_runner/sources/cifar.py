"""CIFAR-10 and CIFAR-100 (fine labels) from the official "python version" archives.

The data folder holds either the archive as published (`cifar-10-python.tar.gz`,
`cifar-100-python.tar.gz`), read in place without extracting it, or its extracted folder
(`cifar-10-batches-py/`, `cifar-100-python/`); the archive wins when both are there. With
verify, an archive is checked against its published MD5, an extracted folder file by file.

Each batch is a Python pickle of a dict: 'data', uint8 [N, 3072] (the 1024 red values of a
32x32 image row by row, then green, then blue: [N, 3, 32, 32] once reshaped) and 'labels'
(CIFAR-10) or 'fine_labels' (CIFAR-100). Unpickling can run code, so a restricted unpickler
admits only what these files are made of (numpy arrays, lists, dicts), checked or not.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import math
import pickle
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import (REFETCH, check_fits, check_folder, check_labels, check_lengths, check_md5, exists, md5_of_file,
                    read_bytes, reading)
from .registry import Arrays, RemoteFile, Source, register

_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array-unpickling helper, wherever this numpy keeps it
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # as written by the official (numpy 1) pickles
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # as written by numpy 2
    ("_codecs", "encode"): codecs.encode,  # bytes in a protocol-2 pickle written by Python 3
}
# What a damaged or foreign pickle raises while loading.
UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError)


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")
        return _ALLOWED[module, name]


@dataclass(frozen=True)
class Layout:
    folder: str  # the archive's top folder, also the extracted folder's name
    train: tuple[tuple[str, str], ...]  # (batch file, MD5), in order
    test: tuple[tuple[str, str], ...]
    label_key: str


def missing(layout: Layout, source: Source, root: Path) -> list[RemoteFile]:
    if check_folder(root, source.name) and (exists(root / source.files[0].name) or exists(root / layout.folder)):
        return []
    return list(source.files)


def _from_archive(archive: Path, layout: Layout) -> dict[str, bytes]:
    wanted = {f"{layout.folder}/{batch}": batch for batch, _ in layout.train + layout.test}
    found = {}
    try:
        with reading(archive), tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    check_fits(member.size, archive, f"{member.name}, as the archive declares it,")
                    found[wanted[member.name]] = tar.extractfile(member).read()
    except tarfile.TarError as err:
        raise DataError(f"{archive} is unreadable: not a tar.gz archive ({err}); {REFETCH}") from None
    absent = [name for name in wanted if wanted[name] not in found]
    if absent:
        raise DataError(f"{archive} lacks {', '.join(absent)}; {REFETCH}")
    return found


def _from_folder(folder: Path, layout: Layout, verify: bool) -> dict[str, bytes]:
    found = {}
    for batch, md5 in layout.train + layout.test:
        path = folder / batch
        if not exists(path):
            raise DataError(f"{path} not found: the folder {folder} is incomplete; put the archive beside it instead")
        found[batch] = read_bytes(path)
        if verify:
            check_md5(hashlib.md5(found[batch], usedforsecurity=False).hexdigest(), md5, path)
    return found


def _batch(data: bytes, where: str, source: Source, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()  # latin1: the pickles come from Python 2
    except UNPICKLING_ERRORS as err:
        raise DataError(f"{where} is not a CIFAR batch ({err}); {REFETCH}") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DataError(f"{where} is not a CIFAR batch: expected a dict with 'data' and '{label_key}'")
    images, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
    check_lengths(images, labels, where)
    if images.dtype != np.uint8 or images.shape[1:] != (math.prod(source.shape),):
        raise DataError(f"{where}: 'data' is {images.dtype} {images.shape}, expected uint8 [N, {math.prod(source.shape)}]")
    return images.reshape(len(images), *source.shape), check_labels(labels, source.num_classes, where)


def decode(layout: Layout, source: Source, root: Path, verify: bool) -> Arrays:
    archive = root / source.files[0].name
    if exists(archive):
        if verify:
            check_md5(md5_of_file(archive), source.files[0].md5, archive)
        batches, where = _from_archive(archive, layout), f"{archive}:{layout.folder}/"
    else:
        folder = root / layout.folder
        batches, where = _from_folder(folder, layout, verify), f"{folder}/"
    splits = {}
    for split, names in (("train", layout.train), ("test", layout.test)):
        parts = [_batch(batches[name], where + name, source, layout.label_key) for name, _ in names]
        splits[f"{split}_x"] = np.concatenate([x for x, _ in parts])
        splits[f"{split}_y"] = np.concatenate([y for _, y in parts])
    return Arrays(**splits, num_classes=source.num_classes)


def _cifar_source(name: str, description: str, archive: RemoteFile, layout: Layout) -> Source:
    return register(Source(
        name, 100 if layout.label_key == "fine_labels" else 10, (3, 32, 32), description,
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "none stated; cite Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009",
        (archive,), f"{archive.name} or its extracted folder {layout.folder}/",
        missing=partial(missing, layout), decode=partial(decode, layout),
    ))


# MD5s of the archives and of the extracted batch files as in torchvision's CIFAR10/CIFAR100
# classes (the archive MD5s also in many independent scripts); sizes as the Toronto server
# sends them (Content-Length in wget and Keras download logs).
_cifar_source(
    "cifar10", "CIFAR-10: 32x32 colour images in 10 classes (airplane ... truck), 50,000 train / 10,000 test",
    RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170498071,
               ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),
    Layout("cifar-10-batches-py",
           (("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
           (("test_batch", "40351d587109b95175f43aff81a1287e"),), "labels"),
)
_cifar_source(
    "cifar100", "CIFAR-100: 32x32 colour images in 100 fine classes, 50,000 train / 10,000 test",
    RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", 169001437,
               ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",)),
    Layout("cifar-100-python", (("train", "16019d7e3df5f24257cddd939b257f8d"),),
           (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),), "fine_labels"),
)
