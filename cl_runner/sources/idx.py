"""The MNIST family in the IDX format: MNIST, Fashion-MNIST and Kuzushiji-MNIST.

Each is four files with the same names (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), gzipped as published or raw. IDX is a
short header and raw bytes: two zero bytes, a type code (0x08 = uint8), the number of
dimensions, then one big-endian uint32 per dimension.

Checksums: MNIST's and Fashion-MNIST's are of the uncompressed content, so a re-gzipped copy
(MNIST's mirrors and ../shared/data/mnist; Debian's package of Fashion-MNIST) or a gunzipped
one passes but an altered one never does. KMNIST's are those its publisher lists, of the .gz
files; a raw (gunzipped) copy of those cannot be checked, so it is refused unless
data.verify=false. The recorded sizes are those of the official .gz downloads: they only tell
`--list` how much a download takes, and never accept or refuse a file (a re-gzipped copy's
size differs).
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import (REFETCH, check_folder, check_image_shape, check_labels, check_lengths, check_md5, exists,
                    gunzip, read_bytes)
from .registry import Arrays, RemoteFile, Source, register

# (Arrays field, file name without .gz), in the order of each source's `files`.
STEMS = (("train_x", "train-images-idx3-ubyte"), ("train_y", "train-labels-idx1-ubyte"),
         ("test_x", "t10k-images-idx3-ubyte"), ("test_y", "t10k-labels-idx1-ubyte"))
EXPECTS = ", ".join(f"{stem}.gz" for _, stem in STEMS) + " (gzipped or raw)"


def _find(root: Path, stem: str) -> Path | None:
    # exists(), not is_file(): a folder in a file's place is reported as unreadable, not skipped.
    for candidate in (root / f"{stem}.gz", root / stem):
        if exists(candidate):
            return candidate
    return None


def missing(source: Source, root: Path) -> list[RemoteFile]:
    if not check_folder(root, source.name):
        return list(source.files)
    return [remote for (_, stem), remote in zip(STEMS, source.files, strict=True) if _find(root, stem) is None]


def _shape(data: bytes) -> tuple[int, ...] | None:
    """The shape an IDX header declares (None when the header is cut short)."""
    try:
        return struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    except (IndexError, struct.error):
        return None


def declared_size(head: bytes) -> int:
    """The bytes of the IDX file whose first bytes are `head`, as its header declares them."""
    shape = _shape(head)
    return len(head) if shape is None else 4 + 4 * len(shape) + math.prod(shape)


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """The uint8 array an IDX file holds; DataError naming the file if it is not one."""
    shape = _shape(data)
    if shape is None:
        raise DataError(f"{path} is not an IDX file (its header is cut short); {REFETCH}")
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (header bytes {data[:4].hex()}); {REFETCH}")
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(shape))
    if body.size != math.prod(shape):
        held = f"more than {math.prod(shape)}" if body.size > math.prod(shape) else str(body.size)
        raise DataError(f"{path}: its header says shape {shape} but it holds {held} bytes of data; {REFETCH}")
    return body.reshape(shape)


def _verify(raw: bytes, content: bytes, path: Path, remote: RemoteFile) -> None:
    if remote.md5_of == "content":
        data = content
    elif path.suffix == ".gz":
        data = raw
    else:
        raise DataError(f"{path}: a gunzipped copy cannot be checked against the published checksum of "
                        f"{remote.name}; put {remote.name} there instead, or set data.verify=false")
    of = "uncompressed content" if remote.md5_of == "content" else "file"
    check_md5(hashlib.md5(data, usedforsecurity=False).hexdigest(), remote.md5, path, of)


def decode(source: Source, root: Path, verify: bool) -> Arrays:
    arrays, paths = {}, {}
    for (key, stem), remote in zip(STEMS, source.files, strict=True):
        path = _find(root, stem)
        if path is None:
            raise DataError(f"{source.name}: {root / remote.name} not found (expected {EXPECTS})")
        raw = read_bytes(path)
        content = gunzip(raw, path, declared_size) if path.suffix == ".gz" else raw
        if verify:
            _verify(raw, content, path, remote)
        arrays[key], paths[key] = parse_idx(content, path), path
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if images.ndim != 3:
            raise DataError(f"{paths[f'{split}_x']}: expected images [N, H, W], got an IDX array of shape {images.shape}")
        arrays[f"{split}_x"] = images.reshape(len(images), 1, *images.shape[1:]).copy()  # writable, [N, 1, H, W]
        check_image_shape(arrays[f"{split}_x"], source.shape, str(paths[f"{split}_x"]))
        arrays[f"{split}_y"] = check_labels(labels, source.num_classes, str(paths[f"{split}_y"]))
        check_lengths(images, labels, f"{paths[f'{split}_x']} and {paths[f'{split}_y']}")
    return Arrays(**arrays, num_classes=source.num_classes)


def _idx_source(name: str, description: str, homepage: str, licence: str, md5_of: str,
                bases: tuple[str, ...], checksums: tuple[tuple[str, int], ...]) -> Source:
    files = tuple(
        RemoteFile(f"{stem}.gz", md5, size, tuple(base + f"{stem}.gz" for base in bases), md5_of)
        for (_, stem), (md5, size) in zip(STEMS, checksums, strict=True)
    )
    return register(Source(name, 10, (1, 28, 28), description, homepage, licence, files, EXPECTS,
                           missing=missing, decode=decode))


# MD5s of the uncompressed IDX files as published with MNIST (also in ../shared/README.md);
# sizes are those of the .gz files on the mirrors (torchvision's download logs agree).
_idx_source(
    "mnist", "MNIST handwritten digits 0-9, 28x28 grey, 60,000 train / 10,000 test",
    "http://yann.lecun.com/exdb/mnist/",
    "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes; derived from NIST data)",
    "content",
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    (("6bbc9ace898e44ae57da46a324031adb", 9912422), ("a25bea736e30d166cdddb491f175f624", 28881),
     ("2646ac647ad5339dbf082846283269ea", 1648877), ("27ae3e4e09519cfbb04c329615203637", 4542)),
)
# MD5s of the uncompressed IDX files, computed from Debian's package dataset-fashion-mnist
# (0.0~git20200523.55506a9-1, files in /usr/share/datasets/fashion-mnist/), whose content is
# Zalando's: its .gz files differ from Zalando's (MD5s 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
# 25c81989df183df01b3e8a0aad5dffbe, bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310
# in zalandoresearch/fashion-mnist's README) only because Debian re-gzipped them without the
# original file name in the gzip header (each is 23-24 bytes shorter; loaders elsewhere list
# these same content MD5s beside Zalando's .gz MD5s). Checking the content accepts both.
# Sizes: Zalando's .gz files (from that README's table; torchvision's agree).
_idx_source(
    "fashion_mnist", "Fashion-MNIST: Zalando article images in 10 classes, 28x28 grey, 60,000 train / 10,000 test",
    "https://github.com/zalandoresearch/fashion-mnist",
    "MIT (Zalando SE)",
    "content",
    ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    (("f4a8712d7a061bf5bd6d2ca38dc4d50a", 26421880), ("9018921c3c673c538a1fc5bad174d6f9", 29515),
     ("8181f5470baa50b63fa0f6fddb340f0a", 4422102), ("15d484375f8d13e6eb1aabb0c3f46965", 5148)),
)
# MD5s of the .gz files as in torchvision's KMNIST class (the files are served by ROIS-CODH).
_idx_source(
    "kmnist", "Kuzushiji-MNIST: cursive Japanese (hiragana) in 10 classes, 28x28 grey, 60,000 train / 10,000 test",
    "https://github.com/rois-codh/kmnist",
    "CC BY-SA 4.0 (ROIS-DS Center for Open Data in the Humanities; from the NIJL Kuzushiji dataset)",
    "file",
    ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    (("bdb82020997e1d708af4cf47b453dcf7", 18165135), ("e144d726b3acfaa3e44228e80efcd344", 29497),
     ("5c965bf0a639b31b8f53240b1b52f4d7", 3041136), ("7320c461ea6c1c855c0b718fb2a4b134", 5120)),
)
