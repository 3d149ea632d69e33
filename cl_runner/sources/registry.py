"""What a data source is, what loading one returns, and the registry of the known ones.

A `Source` describes one data set: its classes and image shape, where it comes from (the
files with their official URLs, sizes and checksums) and two functions from its family's
module: `missing` (which downloadable files the folder lacks) and `decode` (the folder's
files as `Arrays`). Each family module (idx, cifar, npz) registers its sources on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file, saved in the data folder under `name`."""

    name: str
    md5: str
    size: int  # bytes of the official download
    urls: tuple[str, ...]  # official locations, tried in order
    # "file": the MD5 of the file as downloaded. "content": the MD5 of its gunzipped content, so
    # that a re-compressed copy (the shared MNIST files are re-gzipped) is accepted too.
    md5_of: Literal["file", "content"] = "file"


@dataclass(frozen=True)
class Arrays:
    """A data set in memory: images [N, C, H, W] (uint8; float32 only from a user's npz),
    labels int64 [N] in [0, num_classes)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int


@dataclass(frozen=True)
class Source:
    name: str
    num_classes: int | None  # None: read from the data (npz)
    shape: tuple[int, int, int] | None  # (C, H, W); None: read from the data (npz)
    description: str
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    expects: str  # what the data folder must hold, in words (for "not found" messages)
    # missing(source, root) -> the files to download; raises DataError if root is unusable.
    missing: Callable[[Source, Path], list[RemoteFile]] = field(repr=False, compare=False)
    # decode(source, root, verify) -> Arrays: the one place where files become arrays, so the
    # cache of decoded arrays beside the data (cache.py) wraps only this.
    decode: Callable[[Source, Path, bool], Arrays] = field(repr=False, compare=False)

    @property
    def download_bytes(self) -> int:
        return sum(f.size for f in self.files)


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    SOURCES[source.name] = source
    return source
