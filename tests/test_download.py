"""Downloads, for real, from a local HTTP server on 127.0.0.1 serving stand-in files.

The server (http.server in a thread) serves a folder; a path listed in `cut` gets its full
Content-Length but only half its body before the connection closes, as a dropped transfer
would. Sources are given the stand-ins' checksums (standins.with_checksums) and either have
their URLs pointed at the server or are reached through $CL_RUNNER_MIRROR / --mirror.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cl_runner import sources
from cl_runner.sources import cache
from cl_runner.errors import DataError

from .conftest import FASHION_MNIST_DEBIAN, NO_MIRROR, REPO, debian_fashion_mnist
from .standins import IDX_STEMS, with_checksums, write_cifar, write_idx_folder


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        name = self.path.lstrip("/")
        if name not in self.server.cut:
            super().do_GET()
            return
        body = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(served folder, base URL, the server: .cut is a set of names to cut short, .requests a log).
    The tests aim the sources' own URLs at it, so conftest's dead mirror is lifted."""
    monkeypatch.delenv(sources.MIRROR_ENV)
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    httpd.cut, httpd.requests = set(), []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _leftovers(folder: Path) -> list[str]:
    """What a download left in `folder`, less the cache of decoded data a load writes beside it."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if cache.FOLDER not in p.relative_to(folder).parts)


def test_download_saves_verified_files_and_loads_them(server, tmp_path, monkeypatch):
    served, url, httpd = server
    expected = write_idx_folder(served)
    monkeypatch.setitem(sources.SOURCES, "mnist", with_checksums(sources.SOURCES["mnist"], served, base_url=url))
    root = tmp_path / "data" / "mnist"
    arrays = sources.load("mnist", root, download=True, verify=True)
    assert np.array_equal(arrays.train_x, expected["train_x"]) and np.array_equal(arrays.test_y, expected["test_y"])
    assert _leftovers(root) == sorted(f"{stem}.gz" for stem in IDX_STEMS)  # no .part file left
    assert sorted(httpd.requests) == sorted(f"/{stem}.gz" for stem in IDX_STEMS)
    sources.load("mnist", root, download=True, verify=True)  # complete now: nothing fetched again
    assert len(httpd.requests) == 4


def test_a_checksum_mismatch_is_refused_and_nothing_is_left(server, tmp_path, monkeypatch):
    served, url, _ = server
    write_idx_folder(served)
    monkeypatch.setitem(sources.SOURCES, "fashion_mnist", with_checksums(sources.SOURCES["fashion_mnist"], served))
    labels = served / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1] + b"\x09"))  # altered after the md5
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    root = tmp_path / "data" / "fashion_mnist"
    with pytest.raises(DataError) as err:
        sources.load("fashion_mnist", root, download=True, verify=True)
    message = str(err.value)
    assert f"could not download t10k-labels-idx1-ubyte.gz into {root}" in message and "checksum mismatch" in message
    assert "\n" not in message
    # The three good files were saved; the bad one is nowhere, not even as a partial file.
    assert _leftovers(root) == sorted(f"{stem}.gz" for stem in IDX_STEMS if stem != "t10k-labels-idx1-ubyte")


def test_an_interrupted_transfer_leaves_no_file_a_later_run_would_use(server, tmp_path, monkeypatch):
    served, url, httpd = server
    write_idx_folder(served)
    monkeypatch.setitem(sources.SOURCES, "kmnist", with_checksums(sources.SOURCES["kmnist"], served, base_url=url))
    httpd.cut.add("train-images-idx3-ubyte.gz")
    root = tmp_path / "data" / "kmnist"
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: the transfer ended after \d+ of \d+ bytes"):
        sources.load("kmnist", root, download=True, verify=True)
    assert not (tmp_path / "data").exists()  # the first file failed: no folder was left behind
    # A killed process may leave a partial file under its temporary name; it is never read.
    root.mkdir(parents=True)
    (root / ".train-images-idx3-ubyte.gz.123-abcd.part").write_bytes(b"partial")
    with pytest.raises(DataError, match="kmnist not found"):
        sources.load("kmnist", root, download=False, verify=True)
    httpd.cut.clear()
    assert len(sources.load("kmnist", root, download=True, verify=True).train_y) == 30


def test_a_failed_download_leaves_no_empty_folder(server, tmp_path, monkeypatch):
    _, url, _ = server  # serves an empty folder: every file is a 404
    root = tmp_path / "a" / "b" / "mnist"
    monkeypatch.setenv(sources.MIRROR_ENV, url)
    with pytest.raises(DataError, match=r"could not download train-images-idx3-ubyte\.gz .*HTTP 404") as err:
        sources.load("mnist", root, download=True, verify=True)
    assert "nothing was saved" in str(err.value)
    assert not (tmp_path / "a").exists()
    monkeypatch.setenv(sources.MIRROR_ENV, NO_MIRROR)
    with pytest.raises(DataError, match="Connection refused"):
        sources.load("mnist", root, download=True, verify=True)
    assert not (tmp_path / "a").exists()


def test_cifar_archive_download(server, tmp_path, monkeypatch):
    served, url, _ = server
    expected = write_cifar(served, "cifar100", as_archive=True)
    monkeypatch.setitem(sources.SOURCES, "cifar100", with_checksums(sources.SOURCES["cifar100"], served, base_url=url))
    arrays = sources.load("cifar100", tmp_path / "c100", download=True, verify=True)
    assert np.array_equal(arrays.train_x, expected["train_x"]) and arrays.num_classes == 100
    assert _leftovers(tmp_path / "c100") == ["cifar-100-python.tar.gz"]


def test_folder_mirror_and_the_command_line(tmp_path, mnist_root):
    """`make data`'s command on the real MNIST, from a local folder mirror (file:// URLs)."""
    target = tmp_path / "data" / "mnist"
    command = [sys.executable, "-m", "cl_runner.sources", "mnist", str(target), "--mirror", str(mnist_root)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"mnist in {target}: 60000 training and 10000 test images of shape (1, 28, 28), "
                                     "10 classes; checksums OK")
    assert _leftovers(target) == sorted(f"{stem}.gz" for stem in IDX_STEMS)
    elsewhere = [sys.executable, "-m", "cl_runner.sources", "mnist", str(tmp_path / "other"), "--mirror",
                 str(tmp_path / "nowhere")]
    missing = subprocess.run(elsewhere, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1
    assert f"mirror {tmp_path / 'nowhere'} is not a folder" in missing.stderr


def test_debian_fashion_mnist_passes_the_official_content_checksums(tmp_path):
    """Debian's dataset-fashion-mnist (re-gzipped, so not Zalando's .gz MD5s) as `make data
    DATASET=fashion_mnist` fetches it: every file checked by the MD5 of its content."""
    mirror = debian_fashion_mnist()
    target = tmp_path / "fashion_mnist"
    command = [sys.executable, "-m", "cl_runner.sources", "fashion_mnist", str(target), "--mirror", str(mirror)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"fashion_mnist in {target}: 60000 training and 10000 test images of shape "
                                     "(1, 28, 28), 10 classes; checksums OK")
    assert _leftovers(target) == sorted(f"{stem}.gz" for stem in IDX_STEMS)


def _make_data(*args: str) -> list[str]:
    """The command `make data` would run with these variables (make -n: nothing runs)."""
    result = subprocess.run(["make", "-n", "--no-print-directory", f"PYTHON={sys.executable}", "data", *args],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout.strip().splitlines()[-1])


def test_make_data_takes_debian_s_fashion_mnist_folder_as_its_mirror_when_it_exists(tmp_path):
    assert _make_data("DATASET=fashion_mnist", f"FASHION_MNIST_MIRROR={tmp_path}")[-4:] == [
        "fashion_mnist", "data/fashion_mnist", "--mirror", str(tmp_path)]
    assert "--mirror" not in _make_data("DATASET=fashion_mnist", f"FASHION_MNIST_MIRROR={tmp_path / 'none'}")
    assert "--mirror" not in _make_data("DATASET=kmnist", f"FASHION_MNIST_MIRROR={tmp_path}")
    assert _make_data("DATASET=fashion_mnist", f"MIRROR={tmp_path}")[-1] == str(tmp_path)  # MIRROR still wins
    default = _make_data("DATASET=fashion_mnist")
    assert (default[-2:] == ["--mirror", str(FASHION_MNIST_DEBIAN)]) == FASHION_MNIST_DEBIAN.is_dir()


def test_the_tests_cannot_reach_beyond_loopback(tmp_path):
    # conftest's guarantee: a download no test pointed anywhere fails on this machine, never
    # leaves it (192.0.2.1 is TEST-NET-1, reserved for documentation).
    import socket

    assert os.environ[sources.MIRROR_ENV] == NO_MIRROR
    with socket.socket() as sock, pytest.raises(OSError, match="tests never reach the network"):
        sock.connect(("192.0.2.1", 80))
    with pytest.raises(DataError, match="Connection refused"):  # the default sources too
        sources.load("kmnist", tmp_path / "kmnist", download=True, verify=True)
