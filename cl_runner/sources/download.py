"""Downloads that never leave a bad or partial file where a run would read it.

- Where from: each file's official URLs, in order; or, when a mirror is given (the `mirror`
  argument, else $CL_RUNNER_MIRROR), only that mirror: a base URL (http://, https://,
  file://) or a local folder, to which the file's name is appended. A mirror replaces the
  official URLs instead of going first, so a test or an offline machine never reaches out.
- How: the body goes to a temporary file beside the target (`.NAME.PID-XXXX.part`, a name no
  loader looks for); it is renamed to NAME only when its length matches Content-Length and
  its checksum matches the recorded one. On any failure (network, short transfer, wrong
  checksum, Ctrl-C) the temporary file is removed; only a killed process can leave one.
- The data folder is created only once an answer arrives, and removed again (with any
  parent this call made) if no file ends up saved, so a failed download leaves nothing.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from .files import checksum, exists
from .registry import RemoteFile, Source

MIRROR_ENV = "CL_RUNNER_MIRROR"
TIMEOUT_S = 30.0  # per socket operation, not for the whole file
NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)  # ValueError: a malformed URL


class _Refused(Exception):
    """The file one location sent is unusable (cut short, or the wrong checksum)."""


def fetch(source: Source, files: list[RemoteFile], root: Path, mirror: str | None = None) -> None:
    """Download `files` of `source` into `root`; DataError naming the file if one cannot be had."""
    base = mirror or os.environ.get(MIRROR_ENV) or None
    created = _folders_to_create(root)
    try:
        for remote in files:
            _fetch_one(source, remote, root, _locations(remote, base))
    finally:
        for folder in created:  # deepest first; stops at the first that now holds a file
            try:
                folder.rmdir()
            except OSError:
                break


def _folders_to_create(root: Path) -> list[Path]:
    folders = []
    while not exists(root) and root != root.parent:
        folders.append(root)
        root = root.parent
    return folders


def _locations(remote: RemoteFile, base: str | None) -> tuple[str, ...]:
    if base is None:
        return remote.urls
    if "://" in base:
        return (f"{base.rstrip('/')}/{remote.name}",)
    folder = Path(base).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"mirror {folder} is not a folder: give a folder holding the files, or a URL")
    return ((folder / remote.name).as_uri(),)


def _fetch_one(source: Source, remote: RemoteFile, root: Path, urls: tuple[str, ...]) -> None:
    problems = []
    for url in urls:
        try:
            _download(url, remote, root)
            return
        except _Refused as err:
            problems.append(f"{url}: {err}")
        except urllib.error.HTTPError as err:
            problems.append(f"{url}: HTTP {err.code} {err.reason}")
        except urllib.error.URLError as err:
            problems.append(f"{url}: {err.reason}")
        except NETWORK_ERRORS as err:
            problems.append(f"{url}: {err}")
    raise DataError(
        f"{source.name}: could not download {remote.name} into {root} ({'; '.join(problems)}); nothing was saved. "
        f"Put the file there yourself, or fetch it from a folder or URL that has it: "
        f"python -m cl_runner.sources {source.name} {root} --mirror DIR_OR_URL "
        f"(`make data DATASET={source.name} MIRROR=DIR_OR_URL` for data/{source.name}), or set ${MIRROR_ENV}=DIR_OR_URL for cl-run"
    )


def _download(url: str, remote: RemoteFile, root: Path) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        announced = response.headers.get("Content-Length")
        # A name of our own, opened exclusively; not mkstemp, whose files are private (0600)
        # where the data folder may be shared.
        partial = root / f".{remote.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        try:
            root.mkdir(parents=True, exist_ok=True)
            out = open(partial, "xb")
        except OSError as err:
            raise DataError(f"cannot save into {root}: {err.strerror or err}") from None
        try:
            with out:
                shutil.copyfileobj(response, out, 1 << 20)
                received = out.tell()
            if announced is not None and received != int(announced):
                raise _Refused(f"the transfer ended after {received} of {announced} bytes")
            try:
                digest = checksum(partial, remote)
            except DataError:
                raise _Refused("the file sent is damaged (its gzip stream does not decompress)") from None
            if digest != remote.md5:
                raise _Refused(f"checksum mismatch (md5 {digest}, expected {remote.md5}); refused")
            os.replace(partial, root / remote.name)
        finally:
            partial.unlink(missing_ok=True)
