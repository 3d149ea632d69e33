"""The data faults found by the fault-injection review, each ending in one DataError line that
names the absolute path: through sources.load (fast), then through `cl-run` (exit 3, one line
on stderr, nothing trained; slow: one process each)."""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
import torch

from cl_runner import sources
from cl_runner.errors import DataError

from .conftest import REPO, compose_cfg, write_idx
from .standins import IDX_STEMS, write_idx_folder

build_benchmark = importlib.import_module("cl_runner.benchmarks.build")  # the module, not its build()


def _corrupt_deflate(path: pathlib.Path) -> None:
    """Change one byte inside the deflate stream so that zlib itself fails (not the CRC check)."""
    data = path.read_bytes()
    for at in range(len(data) // 2, len(data) - 8):
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            path.write_bytes(damaged)
            return
        except (OSError, EOFError):
            continue
    raise AssertionError("no single byte change breaks the deflate stream")


def test_corrupted_deflate_stream_is_a_data_error(tmp_path):
    write_idx_folder(tmp_path)
    _corrupt_deflate(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is unreadable: damaged \(Error -3"):
        sources.load("mnist", tmp_path, download=False, verify=False)


def test_data_root_that_is_a_file(tmp_path):
    (tmp_path / "mnist").write_text("not a folder")
    with pytest.raises(DataError, match=f"data.root {tmp_path / 'mnist'} is a file, not a folder"):
        sources.load("mnist", tmp_path / "mnist", download=True, verify=True)
    with pytest.raises(DataError, match="is a file, not a folder"):
        sources.load("cifar10", tmp_path / "mnist", download=True, verify=True)


def test_a_folder_where_a_file_is_expected(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").mkdir()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is unreadable \(Is a directory\)"):
        sources.load("mnist", tmp_path, download=True, verify=False)


def test_permission_denied_on_a_file_and_on_the_folder(tmp_path, monkeypatch):
    write_idx_folder(tmp_path)
    real_read, real_exists = pathlib.Path.read_bytes, pathlib.Path.exists

    def denied(path, *args):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda p: denied(p) if p.name.startswith("train-labels") else real_read(p))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is unreadable \(Permission denied\)"):
        sources.load("mnist", tmp_path, download=False, verify=False)
    # What stat() inside a folder without read/search permission raises (Python 3.11 passes it on).
    monkeypatch.setattr(pathlib.Path, "exists", lambda p: denied(p) if p.parent == tmp_path else real_exists(p))
    with pytest.raises(DataError, match="is unreadable \\(Permission denied\\)"):
        sources.load("mnist", tmp_path, download=True, verify=False)


def _as_unprivileged(command: list[str]) -> list[str]:
    """As root, drop the capabilities that bypass file permissions, so chmod 000 really bites."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root without setpriv (util-linux): cannot make file permissions apply"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]


def test_chmod_000_folder_for_real(tmp_path, mnist_root):
    locked = tmp_path / "mnist"
    locked.mkdir()
    for stem in IDX_STEMS:
        shutil.copy(mnist_root / f"{stem}.gz", locked)
    locked.chmod(0)
    try:
        result = subprocess.run(_as_unprivileged([sys.executable, "-m", "cl_runner.sources", "mnist", str(locked)]),
                                capture_output=True, text=True, cwd=REPO, timeout=120)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{locked}/train-images-idx3-ubyte.gz is unreadable (Permission denied)" in result.stderr


def test_out_of_range_label_is_refused_at_load_even_unverified(tmp_path):
    write_idx_folder(tmp_path)
    labels = np.arange(30) % 10
    labels[7] = 255
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: label 255 is out of range \(allowed 0\.\.9\)"):
        sources.load("kmnist", tmp_path, download=False, verify=False)


def test_messages_name_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        sources.load("mnist", "data/mnist", download=False)
    assert f"mnist not found in {tmp_path / 'data' / 'mnist'}:" in str(err.value)
    assert all(stem in str(err.value) for stem in IDX_STEMS)
    write_idx_folder(tmp_path / "data" / "mnist")
    write_idx(tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(30, 12))
    with pytest.raises(DataError, match=f"^{tmp_path}/data/mnist/t10k-labels-idx1-ubyte.gz: label 12"):
        sources.load("mnist", "data/mnist", download=False, verify=False)


# --- the same faults through `cl-run` ----------------------------------------------------------------


def _cl_run(tmp_path, *overrides: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # downloads go nowhere (conftest's $CL_RUNNER_MIRROR)
    command = [sys.executable, "-m", "cl_runner.cli", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
               "train.progress=false", "device=cpu"]
    return subprocess.run(_as_unprivileged(command), capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**env, "PYTHONPATH": str(REPO)})


def _fault(kind: str, tmp_path: pathlib.Path) -> tuple[list[str], str]:
    """Plant one fault; return the overrides that meet it and what the one line must say."""
    root = tmp_path / "mnist"
    if kind == "root is a file":
        root.write_text("x")
        return [f"data.root={root}"], f"data.root {root} is a file, not a folder"
    if kind == "download fails":
        return [f"data.root={tmp_path / 'new' / 'mnist'}"], "could not download train-images-idx3-ubyte.gz"
    write_idx_folder(root)
    if kind == "corrupted deflate":
        _corrupt_deflate(root / "train-images-idx3-ubyte.gz")
        return [f"data.root={root}", "data.verify=false"], f"{root}/train-images-idx3-ubyte.gz is unreadable: damaged"
    if kind == "chmod 000 folder":
        root.chmod(0)
        return [f"data.root={root}"], f"{root}/train-images-idx3-ubyte.gz is unreadable (Permission denied)"
    if kind == "folder in a file's place":
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
        (root / "t10k-labels-idx1-ubyte.gz").mkdir()
        return [f"data.root={root}", "data.verify=false"], f"{root}/t10k-labels-idx1-ubyte.gz is unreadable"
    labels = np.arange(30) % 10
    labels[3] = 255
    write_idx(root / "train-labels-idx1-ubyte.gz", labels)
    return [f"data.root={root}", "data.verify=false"], f"{root}/train-labels-idx1-ubyte.gz: label 255 is out of range"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["corrupted deflate", "root is a file", "chmod 000 folder", "folder in a file's place",
                                  "label 255", "download fails"])
def test_cl_run_exits_3_with_one_line(kind, tmp_path):
    overrides, expected = _fault(kind, tmp_path)
    try:
        result = _cl_run(tmp_path, *overrides)
    finally:
        if kind == "chmod 000 folder":
            (tmp_path / "mnist").chmod(0o755)  # so that pytest can remove it
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "new").exists()  # a failed download leaves no folder behind


@pytest.mark.slow
def test_cl_run_names_the_absolute_folder(tmp_path):
    result = _cl_run(tmp_path, "data.root=data/missing", "data.download=false", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"mnist not found in {tmp_path / 'data' / 'missing'}:" in result.stderr


# --- npz files that are damaged, hostile or not what a classifier needs -------------------------------


def _good_npz_arrays(n: int = 40, classes: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    return {"x_train": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), "y_train": labels,
            "x_test": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), "y_test": labels.copy()}


def _members(path: pathlib.Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rezip(path: pathlib.Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _with_header(npy: bytes, old: str, new: str) -> bytes:
    """The .npy bytes with `old` replaced by `new` in their header, padded to the same length."""
    length = struct.unpack("<H", npy[8:10])[0]
    header = npy[10 : 10 + length].decode("latin1").rstrip().replace(old, new)
    assert len(header) < length
    return npy[:10] + (header.ljust(length - 1) + "\n").encode("latin1") + npy[10 + length:]


def _set_zip_method(path: pathlib.Path, method: int) -> None:
    """Claim another compression method in every local and central header (the bytes stay deflate)."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset : at + offset + 2] = struct.pack("<H", method)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def _set_zip_flag(path: pathlib.Path, flag: int) -> None:
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset : at + offset + 2] = struct.pack("<H", struct.unpack("<H", data[at + offset : at + offset + 2])[0] | flag)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def npz_fault(kind: str, path: pathlib.Path) -> str:
    """Write the npz file of fault `kind` at `path`; return what its one line must say."""
    arrays = _good_npz_arrays()
    if kind == "test lacks a task's classes":
        arrays["y_test"] = arrays["y_test"] % 2  # classes 2, 3 (task 1) never in the test set
    elif kind == "every label 0":
        arrays["y_train"][:] = 0
        arrays["y_test"][:] = 0
    elif kind == "uint64 label 2^64-1":
        arrays["y_train"] = arrays["y_train"].astype(np.uint64)
        arrays["y_train"][3] = 2**64 - 1
    elif kind == "label beyond the class limit":
        arrays["y_test"][0] = 10**9
    elif kind in ZERO_SIDES:
        arrays["x_train"] = arrays["x_test"] = np.zeros(ZERO_SIDES[kind], np.uint8)
    np.savez(path, **arrays)
    members = _members(path)
    if kind == "a member that is not .npy":
        members["y_test.npy"] = b"hello, not an array"
        _rezip(path, members)
    elif kind == "a member without .npy":
        members["y_test"] = members.pop("y_test.npy")
        _rezip(path, members)
    elif kind == "header declaring 10^12 elements":
        members["x_train.npy"] = _with_header(members["x_train.npy"], "(40, 8, 8)", "(1000000000000, 8, 8)")
        _rezip(path, members)
    elif kind == "header declaring fewer":
        members["x_test.npy"] = _with_header(members["x_test.npy"], "(40, 8, 8)", "(39, 8, 8)")
        _rezip(path, members)
    elif kind == "object dtype":
        members["y_train.npy"] = _with_header(members["y_train.npy"], "'<i8'", "'|O'")
        _rezip(path, members)
    elif kind == "deflate64":
        _rezip(path, members, zipfile.ZIP_DEFLATED)
        _set_zip_method(path, 9)
    elif kind == "encrypted":
        _set_zip_flag(path, 0x1)
    elif kind == "damaged lzma":
        _rezip(path, members, zipfile.ZIP_LZMA)
        data = bytearray(path.read_bytes())
        data[60:70] = bytes(10)  # inside x_train.npy's compressed stream
        path.write_bytes(bytes(data))
    return NPZ_FAULTS[kind]


ZERO_SIDES = {"zero-width NHW": (40, 8, 0), "zero-width NHWC": (40, 0, 8, 3), "zero-height NCHW": (40, 1, 0, 8)}
NPZ_FAULTS = {
    "test lacks a task's classes": "no test examples of task 1's classes (2-3)",
    "every label 0": "every label in y_train and y_test is 0: a classifier needs at least two classes",
    "uint64 label 2^64-1": "y_train: label 18446744073709551615 is out of range (allowed 0..99999",
    "label beyond the class limit": "y_test: label 1000000000 is out of range (allowed 0..99999: at most 100,000 classes)",
    "zero-width NHW": "x_train: images of shape (1, 8, 0) (C, H, W) have no pixels",
    "zero-width NHWC": "x_train: images of shape (3, 0, 8) (C, H, W) have no pixels",
    "zero-height NCHW": "x_train: images of shape (1, 0, 8) (C, H, W) have no pixels",
    "a member that is not .npy": "y_test.npy is not a .npy array (the magic string is not correct",
    "a member without .npy": "lacks y_test (it holds: x_train.npy, y_train.npy, x_test.npy, y_test)",
    "header declaring 10^12 elements": "x_train.npy: its header declares a uint8 array of shape (1000000000000, 8, 8) "
                                       "(64,000,000,000,000 bytes), but 2,560 bytes follow it",
    "header declaring fewer": "x_test.npy: its header declares a uint8 array of shape (39, 8, 8) (2,496 bytes), but 2,560",
    "object dtype": "y_train.npy: holds object values; expected plain numbers",
    "deflate64": "x_train.npy is compressed with zip method 9, which cannot be read here (allowed: stored, deflate",
    "encrypted": "x_train.npy is encrypted",
    "damaged lzma": "is unreadable: damaged",
}


@pytest.mark.parametrize("kind", list(NPZ_FAULTS))
def test_npz_faults_are_one_line_before_anything_is_allocated(kind, tmp_path, monkeypatch):
    expected = npz_fault(kind, tmp_path / "bad.npz")
    real_empty = np.empty

    def bounded_empty(shape, *args, **kwargs):  # no array larger than the file could ever be allocated
        assert np.prod(shape) <= 10**6, shape
        return real_empty(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", bounded_empty)
    with pytest.raises(DataError) as err:
        build_benchmark.build(compose_cfg(["dataset=npz", f"dataset.path={tmp_path / 'bad.npz'}"]), torch.device("cpu"))
    message = str(err.value)
    assert expected in message and "\n" not in message and str(tmp_path / "bad.npz") in message, message


def test_every_allowed_compression_still_loads(tmp_path):
    arrays = _good_npz_arrays()
    np.savez(tmp_path / "plain.npz", **arrays)
    members = _members(tmp_path / "plain.npz")
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        _rezip(tmp_path / "again.npz", members, method)
        loaded = sources.load("npz", tmp_path / "again.npz", download=False, verify=False)
        assert np.array_equal(loaded.train_x[:, 0], arrays["x_train"]) and loaded.train_x.flags.writeable
        assert np.array_equal(loaded.test_y, arrays["y_test"]) and loaded.num_classes == 4


def test_big_endian_and_fortran_order_arrays_load_as_written(tmp_path):
    arrays = _good_npz_arrays()
    arrays["x_train"], arrays["x_test"] = np.asfortranarray(arrays["x_train"]), np.asfortranarray(arrays["x_test"])
    arrays["y_train"] = arrays["y_train"].astype(">i4")
    np.savez(tmp_path / "odd.npz", **arrays)
    loaded = sources.load("npz", tmp_path / "odd.npz", download=False, verify=False)
    assert np.array_equal(loaded.train_x[:, 0], arrays["x_train"]) and loaded.train_y.tolist() == arrays["y_train"].tolist()
    floats = {**arrays, "x_train": (arrays["x_train"] / 255).astype(">f8"), "x_test": (arrays["x_test"] / 255).astype(">f8")}
    np.savez(tmp_path / "floats.npz", **floats)
    loaded = sources.load("npz", tmp_path / "floats.npz", download=False, verify=False)
    assert loaded.test_x.dtype == np.float32 and np.allclose(loaded.test_x[:, 0], floats["x_test"])


# --- IDX and CIFAR files whose headers claim more than they hold -------------------------------------


def test_idx_header_declaring_more_than_memory_is_refused_before_decompressing(tmp_path, monkeypatch):
    write_idx_folder(tmp_path)
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 2**31, 2**31, 28)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    read = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, size=-1: read.append(size) or real_read(self, size))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: its content, as its header declares it, takes "
                                        r".* more than this machine's memory"):
        sources.load("mnist", tmp_path, download=False, verify=False)
    assert read == [1024]  # only the head was read


def test_idx_content_longer_than_its_header_declares(tmp_path):
    write_idx_folder(tmp_path)
    images = np.zeros((30, 28, 28), np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", *images.shape)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes() + bytes(10**6)))
    with pytest.raises(DataError, match=r"its header says shape \(30, 28, 28\) but it holds more than 23520 bytes"):
        sources.load("mnist", tmp_path, download=False, verify=False)


def test_cifar_member_claiming_more_than_memory_is_refused_before_reading(tmp_path):
    from .standins import write_cifar

    write_cifar(tmp_path, "cifar10", as_archive=True)
    archive = tmp_path / "cifar-10-python.tar.gz"
    tar = bytearray(gzip.decompress(archive.read_bytes()))
    name = b"cifar-10-batches-py/data_batch_1"
    at = tar.find(name + b"\0")
    tar[at + 124 : at + 136] = b"\x80" + (10**12).to_bytes(11, "big")  # the size field, in base 256 (GNU)
    tar[at + 148 : at + 156] = b" " * 8
    tar[at + 148 : at + 156] = b"%06o\0 " % sum(tar[at : at + 512])  # the header's checksum
    archive.write_bytes(gzip.compress(bytes(tar)))
    with pytest.raises(DataError, match=r"data_batch_1, as the archive declares it, takes 931\.3 GiB"):
        sources.load("cifar10", tmp_path, download=False, verify=False)


# --- the cache's manifest is checked like its arrays ------------------------------------------------


@pytest.fixture
def cached(tmp_path):
    """An MNIST stand-in folder with its cache built, and a decode counter."""
    folder = tmp_path / "mnist"
    write_idx_folder(folder)
    sources.cache._LOADED.clear()
    expected = sources.load("mnist", folder, download=False, verify=False)
    sources.cache._LOADED.clear()
    return folder, expected


def _manifest(folder: pathlib.Path) -> tuple[pathlib.Path, dict]:
    path = folder / sources.cache.FOLDER / sources.cache.MANIFEST
    return path, json.loads(path.read_text())


def _tamper(kind: str, folder: pathlib.Path) -> None:
    path, manifest = _manifest(folder)
    array_file = folder / sources.cache.FOLDER / manifest["arrays"]["train_x"]["file"]
    if kind == "num_classes edited":
        manifest["num_classes"] = 7
    elif kind == "verified turned on":
        manifest["verified"] = True
    elif kind == "num_classes edited and resealed":
        manifest["num_classes"] = 7
        manifest["sha256"] = sources.cache._seal(manifest)
    elif kind == "a shape edited and resealed":
        manifest["arrays"]["train_y"]["shape"] = [29]
        manifest["sha256"] = sources.cache._seal(manifest)
    if kind.startswith(("num_classes", "verified", "a shape")):
        path.write_text(json.dumps(manifest))
        return
    data = array_file.read_bytes()
    if kind == "dtype flipped in a cached header":
        array_file.write_bytes(_with_header(data, "'|u1'", "'|i1'"))
    elif kind == "shape of 10^12 in a cached header":
        array_file.write_bytes(_with_header(data, "(30, 1, 28, 28)", "(1000000000000, 1, 28, 28)"))
    elif kind == "labels out of range, resealed":
        labels_file = folder / sources.cache.FOLDER / manifest["arrays"]["train_y"]["file"]
        labels = np.load(labels_file)
        labels[0] = 12
        np.save(labels_file, labels)
        manifest["arrays"]["train_y"]["crc32"] = zlib.crc32(labels)
        manifest["sha256"] = sources.cache._seal(manifest)
        path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["num_classes edited", "verified turned on", "num_classes edited and resealed",
                                  "a shape edited and resealed", "dtype flipped in a cached header",
                                  "shape of 10^12 in a cached header", "labels out of range, resealed"])
def test_a_tampered_cache_is_rebuilt_never_trusted(kind, cached, caplog, monkeypatch):
    folder, expected = cached
    _tamper(kind, folder)
    decodes = []
    real = sources.SOURCES["mnist"]
    monkeypatch.setitem(sources.SOURCES, "mnist", dataclasses.replace(
        real, decode=lambda source, root, verify: decodes.append(verify) or real.decode(source, root, verify)))
    again = sources.load("mnist", folder, download=False, verify=False)
    assert decodes == [False], "the tampered cache was trusted"
    assert again.num_classes == 10 and all(np.array_equal(getattr(again, k), getattr(expected, k)) and
                                           getattr(again, k).dtype == getattr(expected, k).dtype
                                           for k in ("train_x", "train_y", "test_x", "test_y"))
    if kind != "a shape edited and resealed":  # that one only fails to match (the bytes say 30 labels): no warning needed
        assert "was damaged" in caplog.text
    sources.cache._LOADED.clear()
    sources.load("mnist", folder, download=False, verify=False)
    assert decodes == [False]  # the rebuilt cache is good


def test_a_cache_of_an_older_format_is_rebuilt_quietly(cached, caplog):
    folder, _ = cached
    path, manifest = _manifest(folder)
    manifest["format"] = 1
    del manifest["sha256"]
    path.write_text(json.dumps(manifest))
    sources.load("mnist", folder, download=False, verify=False)
    assert "damaged" not in caplog.text and _manifest(folder)[1]["format"] == sources.cache.FORMAT


def test_a_dangling_symlink_in_the_data_folder(cached):
    folder, expected = cached
    (folder / "README").symlink_to(folder / "nowhere")
    (folder / "loop").symlink_to(folder / "loop")
    again = sources.load("mnist", folder, download=False, verify=False)
    assert np.array_equal(again.train_x, expected.train_x)
    assert "README" in _manifest(folder)[1]["inputs"]  # the link itself is what the cache was built with


# --- a validation share that leaves a task empty ---------------------------------------------------


@pytest.mark.parametrize("share, split", [(0.001, "validation"), (0.999, "training")])
def test_a_val_share_leaving_a_task_empty_is_a_config_error(share, split, tiny_mnist, tmp_path):
    import cl_runner.run as run_module
    from cl_runner.errors import ConfigError

    cfg = compose_cfg([f"data.root={tiny_mnist}", "data.verify=false", "device=cpu", "train.progress=false",
                       f"dataset.val_share={share}"])
    with pytest.raises(ConfigError, match=rf"^invalid config: dataset.val_share={share}: leaves task \d \([0-9-]+\) no "
                                          rf"{split} examples \(of its \d+\)"):
        run_module.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["test lacks a task's classes", "every label 0", "uint64 label 2^64-1", "zero-width NHW",
                                  "a member that is not .npy", "header declaring 10^12 elements", "deflate64",
                                  "object dtype"])
def test_cl_run_npz_faults_exit_3_with_one_line(kind, tmp_path):
    expected = npz_fault(kind, tmp_path / "bad.npz")
    result = _cl_run(tmp_path, "dataset=npz", f"dataset.path={tmp_path / 'bad.npz'}", "train.epochs=1")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 3 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("share", ["0.00001", "0.99999"])
def test_cl_run_val_share_leaving_a_task_empty_exits_2(share, tmp_path, mnist_root):
    result = _cl_run(tmp_path, f"data.root={mnist_root}", f"dataset.val_share={share}", "train.epochs=1")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"invalid config: dataset.val_share={float(share)!r}: leaves task" in lines[0], lines[0]
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
def test_cl_run_with_a_dangling_symlink_in_the_data_folder(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    (tmp_path / "mnist" / "README").symlink_to(tmp_path / "nowhere")
    result = _cl_run(tmp_path, f"data.root={tmp_path / 'mnist'}", "data.verify=false", "train.iterations=2")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
