"""Errors a user can cause, each turned into one clear line and an exit code by the CLI.

`ConfigError` (exit 2) is raised before any data is loaded; `DataError` (exit 3) when
the data folder is missing or a file fails its checksum; `WriteError` (exit 5) when the run
folder cannot take the results (a full disk, a folder made read-only or removed);
`LaunchError` (exit 6) when a sweep's cluster launcher cannot submit or reach its jobs (sbatch
refuses them, no Ray cluster answers), or one of its jobs' processes dies;
`DamagedRunError` (exit 7) when the run folder `resume=` would continue is not whole (a file
missing, cut short or edited, so that its rows, its checkpoint and its records disagree). Anything
else that stops a run after it started (divergence, interruption) is reported in
`summary.json`.
"""

from __future__ import annotations

import os
from enum import Enum

EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_FAILED = 4  # the run started and failed (e.g. diverged)
EXIT_WRITE = 5  # results could not be written
EXIT_LAUNCH = 6  # a sweep's launcher could not submit or run the sweep's jobs
EXIT_DAMAGED = 7  # the run folder to resume is damaged: nothing was changed
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM, as shells report Ctrl-C


class UserError(Exception):
    """A mistake in the command line or the environment, not a bug. Its message is one line:
    a line break inside a value it quotes is shown as \\n."""

    exit_code = EXIT_CONFIG

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


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


class WriteError(UserError):
    """A file of the run could not be written: names its absolute path and the reason."""

    exit_code = EXIT_WRITE

    def __init__(self, path: os.PathLike | str, err: OSError):
        self.path, self.reason = os.path.abspath(path), err.strerror or str(err)
        super().__init__(f"results could not be written: {self.path}: {self.reason}")


class LaunchError(UserError):
    """A sweep's launcher (Slurm, Ray) refused or could not reach the cluster: names the launcher
    and the cluster's own first line of explanation."""

    exit_code = EXIT_LAUNCH


class DamagedRunError(UserError):
    """The run folder `resume=` names cannot be continued as it is: a file of it is missing,
    unreadable, cut short or edited, so that metrics.csv, train_log.csv, checkpoint.pt and
    trackers.json no longer agree. Neither a typo (exit 2: the command is fine) nor a failed
    write (exit 5: nothing was written); the folder is left exactly as it was. Names the folder,
    the file and what does not fit."""

    exit_code = EXIT_DAMAGED

    def __init__(self, folder: os.PathLike | str, what: str):
        self.folder = os.path.abspath(folder)
        super().__init__(f"{self.folder} cannot be resumed: {what}; restore the file or start the run again "
                         "(overwrite=true)")
