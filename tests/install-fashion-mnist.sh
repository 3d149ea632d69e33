#!/usr/bin/env bash
# Installs Debian's package dataset-fashion-mnist (MIT, Zalando's official files re-gzipped) for
# the test on real Split Fashion-MNIST (tests/test_e2e.py; the fixture fashion_mnist_root in
# tests/conftest.py fetches and checks it from there). Needs root and apt-get (Debian or
# Ubuntu); does nothing where the files are already there. `make test` runs it and goes on
# without the files when it fails: the test then skips, or fails under CI=true.
set -euo pipefail
PACKAGE=dataset-fashion-mnist
FOLDER=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

present() {
    for file in "${FILES[@]}"; do [ -f "$FOLDER/$file" ] || return 1; done
}
if present; then
    echo "install-fashion-mnist: already installed in $FOLDER"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-fashion-mnist: $FOLDER is missing: run as root to apt-get install $PACKAGE" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "install-fashion-mnist: $FOLDER is missing and there is no apt-get here (the package is Debian's and Ubuntu's)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -q -o DPkg::Lock::Timeout=300 "$@"; }
# From the package lists already there first (install-slurm.sh may just have updated them);
# then once more after an update, as a fresh container has no lists at all.
if apt_get install -y --no-install-recommends "$PACKAGE" || { apt_get update && apt_get install -y --no-install-recommends "$PACKAGE"; }; then
    if present; then
        echo "install-fashion-mnist: installed $PACKAGE into $FOLDER"
        exit 0
    fi
    echo "install-fashion-mnist: $PACKAGE is installed but $FOLDER lacks its files" >&2
    exit 1
fi
echo "install-fashion-mnist: could not install $PACKAGE with apt-get (see above)" >&2
exit 1
