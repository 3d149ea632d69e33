"""`cl-run --version`: cl-runner's version with those of the packages that make its numbers."""

from __future__ import annotations

import sys


def versions() -> str:
    """`cl-runner 0.1.0 (torch 2.13.0+cpu, Hydra 1.3.8, Python 3.11.7)`, read from the installed
    packages' metadata: importing torch for its version would take a second."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"cl-runner {__version__} (torch {installed('torch')}, Hydra {installed('hydra-core')}, "
            f"Python {sys.version.split()[0]})")
