"""cl_runner.sources on stand-ins of each official format: what load() returns, and the format
faults of each (the review's faults are in test_data_faults.py, downloads in test_download.py)."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from cl_runner import sources
from cl_runner.errors import ConfigError, DataError
from cl_runner.sources import cifar, idx

from .conftest import write_idx
from .standins import IDX_STEMS, python2_pickle, with_checksums, write_cifar, write_idx_folder


def _same(arrays: sources.Arrays, expected: dict[str, np.ndarray]) -> None:
    for key, want in expected.items():
        got = getattr(arrays, key)
        assert got.shape == want.shape and np.array_equal(got, want), key
    assert arrays.train_x.dtype == np.uint8 and arrays.train_y.dtype == np.int64 and arrays.test_y.dtype == np.int64


# --- the MNIST family (IDX) -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_idx_family_loads_stand_ins(name, tmp_path):
    expected = write_idx_folder(tmp_path, per_class=3)
    arrays = sources.load(name, tmp_path, download=False, verify=False)
    _same(arrays, expected)
    assert arrays.train_x.shape == (30, 1, 28, 28) and arrays.num_classes == 10
    assert sources.SOURCES[name].shape == (1, 28, 28) and arrays.train_x.flags.writeable


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_checksum_is_of_the_content_so_a_regzipped_copy_passes(name, tmp_path, monkeypatch):
    # Fashion-MNIST as Debian packages it: the official content, re-gzipped with no file name
    # in the gzip header (mtime 0 too), so its .gz files differ from Zalando's byte for byte.
    write_idx_folder(tmp_path / "a")
    monkeypatch.setitem(sources.SOURCES, name, with_checksums(sources.SOURCES[name], tmp_path / "a"))
    assert sources.SOURCES[name].files[0].md5_of == "content"
    (tmp_path / "b").mkdir()
    for stem in IDX_STEMS:  # the same content, compressed differently
        content = gzip.decompress((tmp_path / "a" / f"{stem}.gz").read_bytes())
        (tmp_path / "b" / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
        assert (tmp_path / "b" / f"{stem}.gz").read_bytes() != (tmp_path / "a" / f"{stem}.gz").read_bytes()
    assert len(sources.load(name, tmp_path / "b", download=False, verify=True).train_y) == 30
    # A gunzipped copy is checked too; an altered one fails, gzipped or not.
    path = tmp_path / "b" / "t10k-labels-idx1-ubyte"
    path.write_bytes(gzip.decompress(path.with_suffix(".gz").read_bytes()))
    path.with_suffix(".gz").unlink()
    assert len(sources.load(name, tmp_path / "b", download=False, verify=True, cached=False).test_y) == 30
    path.write_bytes(path.read_bytes()[:-1] + bytes([(path.read_bytes()[-1] + 1) % 10]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte fails its checksum \(md5 of the uncompressed content"):
        sources.load(name, tmp_path / "b", download=False, verify=True)


def test_kmnist_checksum_is_of_the_gz_file_and_a_raw_copy_cannot_be_verified(tmp_path, monkeypatch):
    write_idx_folder(tmp_path)
    monkeypatch.setitem(sources.SOURCES, "kmnist", with_checksums(sources.SOURCES["kmnist"], tmp_path))
    assert len(sources.load("kmnist", tmp_path, download=False, verify=True).test_y) == 30
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="gunzipped copy cannot be checked"):
        sources.load("kmnist", tmp_path, download=False, verify=True)
    assert len(sources.load("kmnist", tmp_path, download=False, verify=False).test_y) == 30


def test_stand_ins_fail_the_real_checksums(tmp_path):
    write_idx_folder(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz fails its checksum"):
        sources.load("mnist", tmp_path, download=False, verify=True)


def test_not_an_idx_file(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x1e" + bytes(30)))
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        sources.load("mnist", tmp_path, download=False, verify=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(DataError, match="header is cut short"):
        sources.load("mnist", tmp_path, download=False, verify=False)


# --- CIFAR ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize("as_archive", [True, False], ids=["archive", "folder"])
def test_cifar_loads_the_archive_and_the_extracted_folder(name, classes, as_archive, tmp_path):
    expected = write_cifar(tmp_path, name, as_archive, per_class=1)
    arrays = sources.load(name, tmp_path, download=False, verify=False)
    _same(arrays, expected)
    train_batches = 5 if name == "cifar10" else 1
    assert arrays.train_x.shape == (classes * train_batches, 3, 32, 32) and arrays.num_classes == classes
    assert sorted(arrays.test_y.tolist()) == list(range(classes))  # CIFAR-100: the fine labels


def test_cifar_archive_checksum(tmp_path, monkeypatch):
    write_cifar(tmp_path, "cifar10", as_archive=True)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz fails its checksum"):
        sources.load("cifar10", tmp_path, download=False, verify=True)
    monkeypatch.setitem(sources.SOURCES, "cifar10", with_checksums(sources.SOURCES["cifar10"], tmp_path))
    assert len(sources.load("cifar10", tmp_path, download=False, verify=True).train_y) == 100


def test_cifar_folder_is_checked_file_by_file(tmp_path, monkeypatch):
    write_cifar(tmp_path, "cifar100", as_archive=False)
    with pytest.raises(DataError, match=r"cifar-100-python/train fails its checksum"):
        sources.load("cifar100", tmp_path, download=False, verify=True)
    source = sources.SOURCES["cifar100"]
    layout = source.decode.args[0]
    folder = tmp_path / layout.folder
    digest = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in ("train", "test")}
    fitted = replace(layout, train=(("train", digest["train"]),), test=(("test", digest["test"]),))
    monkeypatch.setitem(sources.SOURCES, "cifar100", replace(source, decode=partial(cifar.decode, fitted)))
    assert len(sources.load("cifar100", tmp_path, download=False, verify=True).test_y) == 200
    (folder / "test").unlink()
    with pytest.raises(DataError, match=r"cifar-100-python/test not found: the folder .* is incomplete"):
        sources.load("cifar100", tmp_path, download=False, verify=True)


def test_cifar_faults(tmp_path):
    write_cifar(tmp_path / "a", "cifar10", as_archive=True, labels_override={"data_batch_3": [10] * 20})
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_3: label 10 is out of range \(allowed 0\.\.9\)"):
        sources.load("cifar10", tmp_path / "a", download=False, verify=False)
    archive = tmp_path / "a" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-3000])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz is unreadable"):
        sources.load("cifar10", tmp_path / "a", download=False, verify=False)
    with tarfile.open(archive, "w:gz"):  # an archive without the batches
        pass
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/data_batch_1"):
        sources.load("cifar10", tmp_path / "a", download=False, verify=False)


def test_cifar_unpickler_runs_no_code(tmp_path):
    write_cifar(tmp_path, "cifar100", as_archive=False)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps({"data": Evil(), "fine_labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        sources.load("cifar100", tmp_path, download=False, verify=False)
    assert not marker.exists()
    (tmp_path / "cifar-100-python" / "train").write_bytes(python2_pickle([1, 2]))
    with pytest.raises(DataError, match="expected a dict with 'data' and 'fine_labels'"):
        sources.load("cifar100", tmp_path, download=False, verify=False)


# --- npz: the user's own file ---------------------------------------------------------------------


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "NHWC1"])
def test_npz_layouts(layout, tmp_path):
    rng = np.random.default_rng(0)
    channels = 1 if layout in ("NHW", "NHWC1") else 3
    nchw = {s: rng.integers(0, 256, size=(n, channels, 5, 7), dtype=np.uint8) for s, n in (("train", 6), ("test", 4))}
    to_layout = {"NHW": lambda a: a[:, 0], "NHWC": lambda a: a.transpose(0, 2, 3, 1),
                 "NHWC1": lambda a: a.transpose(0, 2, 3, 1), "NCHW": lambda a: a}[layout]
    path = _npz(tmp_path / "mine.npz", x_train=to_layout(nchw["train"]), y_train=np.array([0, 1, 2, 0, 1, 2]),
                x_test=to_layout(nchw["test"]), y_test=np.array([[3], [0], [1], [2]], dtype=np.uint8))
    arrays = sources.load("npz", path, download=False, verify=True)
    assert np.array_equal(arrays.train_x, nchw["train"]) and np.array_equal(arrays.test_x, nchw["test"])
    assert arrays.test_y.tolist() == [3, 0, 1, 2] and arrays.test_y.dtype == np.int64 and arrays.num_classes == 4


def test_npz_float_images_stay_float32(tmp_path):
    path = _npz(tmp_path / "f.npz", x_train=np.full((2, 3, 3), 0.5), y_train=[0, 1], x_test=np.zeros((1, 3, 3)), y_test=[1])
    arrays = sources.load("npz", path, download=False, verify=False)
    assert arrays.train_x.dtype == np.float32 and arrays.train_x.shape == (2, 1, 3, 3) and arrays.num_classes == 2


GOOD = {"x_train": np.zeros((3, 4, 4), np.uint8), "y_train": np.array([0, 1, 2]),
        "x_test": np.zeros((2, 4, 4), np.uint8), "y_test": np.array([1, 0])}


@pytest.mark.parametrize("change, message", [
    ({"y_test": None}, "lacks y_test"),
    ({"y_train": np.array([0, 1])}, "x_train and y_train: 3 images but 2 labels"),
    ({"y_train": np.array([0.0, 1.5, 2.0])}, "y_train: labels must be integers, got float64"),
    ({"y_test": np.array([1, -1])}, "y_test: label -1 is out of range"),
    ({"x_train": np.zeros((3, 4), np.uint8)}, r"x_train: images of shape \(3, 4\)"),
    ({"x_train": np.zeros((3, 2, 4, 4), np.uint8)}, r"x_train: images of shape \(3, 2, 4, 4\): expected \[N, H, W\]"),
    ({"x_train": np.zeros((3, 4, 4), np.int64)}, "images must be uint8 or float, got int64"),
    ({"x_train": np.full((3, 4, 4), np.nan)}, "NaN or infinite"),
    ({"x_test": np.zeros((2, 5, 5), np.uint8)}, r"x_train images are \(1, 4, 4\) \(C, H, W\) but x_test \(1, 5, 5\)"),
])
def test_npz_faults(change, message, tmp_path):
    arrays = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        sources.load("npz", path, download=False, verify=False)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_npz_not_an_npz(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        sources.load("npz", tmp_path / "one.npy", download=True, verify=False)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz file"):
        sources.load("npz", tmp_path / "text.npz", download=True, verify=False)
    with pytest.raises(DataError, match="is a folder: it must be the .npz file"):
        sources.load("npz", tmp_path, download=True, verify=False)
    with pytest.raises(DataError, match="not found"):
        sources.load("npz", tmp_path / "nope.npz", download=True, verify=False)


def test_unknown_source_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="one of mnist, fashion_mnist, kmnist, cifar10, cifar100, npz"):
        sources.load("svhn", tmp_path)


def test_parse_idx_round_trip_and_size_check(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a.gz", images)
    data = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert np.array_equal(idx.parse_idx(data, tmp_path / "a"), images)
    with pytest.raises(DataError, match=r"header says shape \(2, 28, 28\) but it holds 1567 bytes"):
        idx.parse_idx(data[:-1], tmp_path / "a")
