"""Small stand-ins for each official data format, written the way their publishers write them.

- the MNIST family: four gzipped IDX files;
- CIFAR: batches pickled as Python 2 wrote them (byte-string keys, numpy uint8 'data' saved
  under numpy.core), in the official tar.gz or as its extracted folder;
- npz: the user's own file, in any layout.
Each writer returns the arrays it wrote (images [N, C, H, W]) so tests compare what
`sources.load` gives back, and `with_checksums` makes a source whose recorded checksums
(computed here with hashlib, independently of the code under test) fit the stand-ins.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from cl_runner.sources import Source

from .conftest import write_idx

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def balanced_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def write_idx_folder(root: Path, per_class: int = 3, num_classes: int = 10) -> dict[str, np.ndarray]:
    """The four gzipped IDX files of an MNIST-family data set, 28x28 images."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, prefix, seed in (("train", "train", 1), ("test", "t10k", 2)):
        labels = balanced_labels(num_classes, per_class, seed)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = images[:, None], labels
    return arrays


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as in the official CIFAR batches."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def python2_pickle(obj) -> bytes:
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(obj)
    # The official files were written with numpy 1, which kept _reconstruct in numpy.core.
    return out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


CIFAR = {  # name -> (folder, archive, train batches, test batches, label key, classes)
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ["train"], ["test"], b"fine_labels", 100),
}


def cifar_batches(name: str, per_class: int = 2, labels_override: dict | None = None) -> tuple[dict, dict]:
    """({batch file: pickled bytes}, expected arrays); each train batch holds per_class images of
    each class, the test batch too. labels_override: {batch file: labels} to plant a fault."""
    _, _, train, test, label_key, classes = CIFAR[name]
    rng = np.random.default_rng(3)
    files, parts = {}, {"train": [], "test": []}
    for split, batches in (("train", train), ("test", test)):
        for i, batch in enumerate(batches):
            labels = balanced_labels(classes, per_class, seed=10 + i + (100 if split == "test" else 0))
            images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
            written = (labels_override or {}).get(batch, labels)
            files[batch] = python2_pickle({b"batch_label": b"stand-in", label_key: [int(v) for v in written],
                                           b"data": images.reshape(len(images), 3072)})
            parts[split].append((images, labels))
    expected = {f"{s}_{k}": np.concatenate([p[j] for p in parts[s]]) for s in parts for j, k in ((0, "x"), (1, "y"))}
    return files, expected


def write_cifar(root: Path, name: str, as_archive: bool, **kwargs) -> dict[str, np.ndarray]:
    folder, archive = CIFAR[name][:2]
    files, expected = cifar_batches(name, **kwargs)
    root.mkdir(parents=True, exist_ok=True)
    if as_archive:
        with tarfile.open(root / archive, "w:gz") as tar:
            for batch, data in files.items():
                info = tarfile.TarInfo(f"{folder}/{batch}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (root / folder).mkdir()
        for batch, data in files.items():
            (root / folder / batch).write_bytes(data)
    return expected


def with_checksums(source: Source, folder: Path, base_url: str | None = None) -> Source:
    """`source` with the checksums (and sizes) of the stand-ins in `folder`; with base_url, its
    files' official URLs point there instead."""
    files = []
    for remote in source.files:
        data = (folder / remote.name).read_bytes()
        hashed = gzip.decompress(data) if remote.md5_of == "content" else data
        urls = (f"{base_url}/{remote.name}",) if base_url else remote.urls
        files.append(replace(remote, md5=hashlib.md5(hashed).hexdigest(), size=len(data), urls=urls))
    return replace(source, files=tuple(files))
