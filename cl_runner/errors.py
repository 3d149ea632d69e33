"""Errors a user can cause, each turned into one clear line and an exit code by the CLI.

`ConfigError` (exit 2) is raised before any data is loaded; `DataError` (exit 3) when
the data folder is missing or a file fails its checksum. Anything else that stops a
run after it started (divergence, interruption) is reported in `summary.json`.
"""

from __future__ import annotations

from enum import Enum

EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_FAILED = 4  # the run started and failed (e.g. diverged)
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM, as shells report Ctrl-C


class UserError(Exception):
    """A mistake in the command line or the environment, not a bug."""

    exit_code = 1


class ConfigError(UserError):
    """A bad configuration value: names the key, the value and what is allowed."""

    exit_code = EXIT_CONFIG

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        shown = value.value if isinstance(value, Enum) else value  # a closed choice: its name
        super().__init__(f"invalid config: {key}={shown!r}: {allowed}")


class DataError(UserError):
    """The data set is missing, truncated or altered."""

    exit_code = EXIT_DATA
