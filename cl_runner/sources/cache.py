"""Decoded arrays kept beside the data, so a run reads them in milliseconds instead of
decompressing, checksumming and parsing the published files every time.

`decoded(source, root, verify)` returns `source.decode(source, root, verify)`, from the cache
folder `root/.cl-runner-cache/` when it is valid, else decoding and (re)writing it. It is
valid only when all of these hold, so it is never trusted blindly:

- its manifest is in this cache format, and sealed: the SHA-256 of its content is recorded in
  it, so an edited manifest (a changed class count, `verified` turned on) is caught, not trusted;
- it names this source;
- the data folder's files have the same names, sizes, modification and status change times
  as when it was built (replacing, touching, adding or removing any file there rebuilds it);
  a dangling symbolic link there counts as the link itself;
- it was built with the checksums checked, when this run asks for them (data.verify=true);
- every array file has the recorded size, its .npy header the recorded dtype and shape (read
  before anything is allocated: `files.read_npy`), and its bytes the recorded CRC-32 (a fast
  hash: about 10 ms for all of MNIST), so a damaged cache file is caught and rebuilt;
- the arrays pass the source's own format checks again (image shape and type, labels in range
  of the source's classes, which must be the recorded count): milliseconds, and what the
  decoder would have refused never reaches a run through the cache.

Within one process (a sweep's runs, one after the other) the arrays read last are kept and
given out again while the data folder's files stay as they were and the arrays' CRC-32s say
nothing wrote into them.

Writing is best effort: a read-only data folder (a shared copy) or a full disk just means no
cache. Array files are named by their content's hash and the manifest, naming them, is
replaced last and atomically, so runs building the cache at once never read a mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import check_image_shape, check_labels, check_lengths, read_npy
from .registry import Arrays, Source

log = logging.getLogger(__name__)

FOLDER = ".cl-runner-cache"
MANIFEST = "manifest.json"
FORMAT = 2  # bump when the arrays a decode returns, or the manifest, change meaning


def decoded(source: Source, root: Path, verify: bool, read: bool = True) -> Arrays:
    """The source's arrays from the cache when it is valid, else decoded (and cached).
    read=False: decode (and check) the files whatever the cache holds, then rewrite it."""
    if not root.is_dir():  # a single file (npz): numpy reads it as fast as a cache would
        return source.decode(source, root, verify)
    folder = root / FOLDER
    inputs = _inputs(root)
    key = (source.name, str(root), verify)
    kept = _LOADED.get(key)
    if read and kept is not None and kept[0] == inputs and _crcs(kept[1]) == kept[2]:
        return kept[1]  # the files unchanged, and nothing wrote into these arrays since
    found = _read(folder, source, inputs, verify) if read else None
    if found is None:
        arrays = source.decode(source, root, verify)
        found = arrays, _write(folder, source, inputs, verify, arrays)
    _LOADED.clear()  # one data set kept per process
    _LOADED[key] = (inputs, *found)
    return found[0]


# The arrays this process read last, the data folder's files as they were then, and the
# arrays' CRC-32s: a sweep's next run in the same process (Hydra's basic launcher) takes them
# again if neither the files nor the arrays changed (a run that wrote into them would show).
_LOADED: dict[tuple, tuple[dict, Arrays, dict]] = {}


def _crcs(arrays: Arrays) -> dict[str, int]:
    return {key: zlib.crc32(np.ascontiguousarray(array)) for key, array in _items(arrays) if key != "num_classes"}


def _items(arrays: Arrays) -> list[tuple[str, object]]:
    return [(f.name, getattr(arrays, f.name)) for f in fields(arrays)]  # not asdict: it deep-copies


def _inputs(root: Path) -> dict[str, list[int]]:
    """Path -> [size, modification time, status change time (ns)] of every file under the data
    folder. The change time cannot be set back (a copy keeping the modification time, such as
    `rsync -t` or `cp -p`, still gets a new one)."""
    found = {}
    for folder, subfolders, files in os.walk(root):  # subfolders too: an extracted CIFAR archive
        subfolders[:] = sorted(d for d in subfolders if not (folder == str(root) and d == FOLDER))
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling (or looping) symbolic link: the link itself, never an error
                try:
                    stat = os.lstat(path)
                except OSError:  # removed meanwhile
                    continue
            found[os.path.relpath(path, root)] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    return found


def _read(folder: Path, source: Source, inputs: dict, verify: bool) -> tuple[Arrays, dict[str, int]] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:  # an older cl-runner's cache: rebuilt in this one's format
            return None
        if manifest.get("sha256") != _seal(manifest):
            return _damaged(folder, MANIFEST, "its content does not match its SHA-256")
        if (manifest["format"], manifest["source"], manifest["inputs"]) != (FORMAT, source.name, inputs):
            return None
        if verify and not manifest["verified"]:
            return None
        arrays, crcs = {}, {}
        for key, entry in manifest["arrays"].items():
            path = folder / entry["file"]
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size != entry["bytes"]:
                    return None
                arrays[key], crcs[key] = read_npy(file, size, str(path)), entry["crc32"]
            if [arrays[key].dtype.str, list(arrays[key].shape)] != [entry["dtype"], entry["shape"]]:
                return _damaged(folder, entry["file"], "its header's dtype or shape is not the recorded one")
            if zlib.crc32(arrays[key]) != crcs[key]:
                return _damaged(folder, entry["file"], "its bytes fail their CRC-32")
        found = Arrays(**arrays, num_classes=manifest["num_classes"])
        _check(found, source)
        return found, crcs
    except DataError as err:  # a damaged .npy header, or arrays the source's checks refuse
        return _damaged(folder, MANIFEST, str(err))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent, unreadable or not ours: rebuild
        return None


def _seal(manifest: dict) -> str:
    """The SHA-256 of a manifest's content, its own seal left out."""
    content = {key: value for key, value in manifest.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _damaged(folder: Path, name: str, why: str) -> None:
    log.warning("the decoded-data cache %s was damaged (%s: %s); rebuilding it", folder, name, why)
    return None


def _check(arrays: Arrays, source: Source) -> None:
    """The source's format checks of decoded arrays, again (DataError)."""
    if arrays.num_classes != source.num_classes:
        raise DataError(f"{arrays.num_classes} classes recorded, but {source.name} has {source.num_classes}")
    for split in ("train", "test"):
        images, labels = getattr(arrays, f"{split}_x"), getattr(arrays, f"{split}_y")
        if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype != np.int64:
            raise DataError(f"{split} arrays of types {images.dtype} {labels.dtype}, expected uint8 int64")
        check_image_shape(images, source.shape, f"{split}_x")
        check_labels(labels, source.num_classes, f"{split}_y")
        check_lengths(images, labels, split)


def _write(folder: Path, source: Source, inputs: dict, verify: bool, arrays: Arrays) -> dict[str, int]:
    """Write the cache (best effort); the arrays' CRC-32s."""
    crcs, entries = _crcs(arrays), {}
    try:
        folder.mkdir(exist_ok=True)
        for key, crc in crcs.items():
            array = np.ascontiguousarray(getattr(arrays, key))
            name = f"{key}-{crc:08x}-{array.size}.npy"
            _replace(folder / name, lambda file, array=array: np.save(file, array, allow_pickle=False))
            entries[key] = {"file": name, "bytes": (folder / name).stat().st_size, "crc32": crc,
                            "dtype": array.dtype.str, "shape": list(array.shape)}
        manifest = {"format": FORMAT, "source": source.name, "num_classes": arrays.num_classes, "verified": verify,
                    "inputs": inputs, "arrays": entries}
        manifest["sha256"] = _seal(manifest)
        _replace(folder / MANIFEST, lambda file: file.write(json.dumps(manifest, indent=1).encode()))
    except OSError as err:  # read-only data folder, full disk: run without a cache
        log.info("no decoded-data cache in %s (%s)", folder, err.strerror or err)
        return crcs
    keep = {entry["file"] for entry in entries.values()} | {MANIFEST}
    for stale in os.listdir(folder):  # arrays of an earlier build; a temporary file of a running one stays
        if stale not in keep and not stale.endswith(".tmp"):
            try:
                os.unlink(folder / stale)
            except OSError:
                pass
    return crcs


def _replace(path: Path, write) -> None:
    """Write `path` through a temporary file renamed over it: readers see all or nothing. Not
    records.replaced: runs may build one cache at once, so each needs a temporary name of its
    own (the process id), and a failure here only means no cache, never a WriteError."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            write(file)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
