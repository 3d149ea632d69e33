"""A run's output folder: claimed before anything is written into it, released after.

`claim(target)` makes the folder and takes an exclusive lock on `.cl-run.lock` in it, held
for the whole run, so two processes never write one folder (`folder_lock`): nor one inside
a folder another holds, such as a running sweep's, nor a sweep around a folder held. It refuses a folder that already
holds a run's results (or, for a sweep, runs' results) unless `overwrite=true`, which removes
those files first, or the run resumes it. A name made from the clock (`${now:...}`, the
default) is made unique instead: when a folder of that name exists (another run started in
the same second), `-2`, `-3`, ... is appended; `mkdir` is atomic, so two runs started at
once still get two folders.

Results are what a run writes once training starts (`RESULT_FILES`; for a sweep, any job
folder holding them). A folder holding only what Hydra writes first (`.hydra/`,
`cl-run.log`) -- a run killed before it trained -- holds nothing to lose: it is reused; so
is one whose run ended, however, before its first epoch finished (`status.untrained`).

`release(claim)` drops the lock. A run that wrote no results (it failed or was interrupted
before training) leaves nothing behind: the files Hydra put there and the folders this
process created are removed; a folder that existed before is never removed. A cluster
launcher's own logs (`LAUNCHER_FILES`) stay, with the folders holding them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import folder_lock, status
from .errors import ConfigError, WriteError
from .folder_lock import LOCK

HYDRA_FILES = (".hydra", "cl-run.log")  # written by Hydra before the run starts
RESULT_FILES = ("summary.json", "metrics.csv", "train_log.csv", "config.yaml", "checkpoint.pt",
                "accuracy_matrix.csv", "accuracy_matrix.png", "curves.png",
                # what the experiment trackers keep in the run folder (cl_runner/trackers/)
                "trackers.json", "tensorboard", "wandb")
# A sweep folder's own: Hydra's record, Optuna's result, and the MLflow store its jobs share
# (cl_runner/trackers/mlflow.py), which goes with the runs it holds when they are replaced.
SWEEP_FILES = ("multirun.yaml", "optimization_results.yaml", "mlruns")
REFUSED = ".cl-run.refused"  # a sweep's jobs that were refused (cl_runner.cli)
# A cluster launcher's job scripts and logs (submitit's): kept even when no run started, as
# they say why (the script sbatch refused, a job's traceback on the node).
LAUNCHER_FILES = (".submitit",)


@dataclass(frozen=True)
class Target:
    """The folder a command line will write into, as the precheck resolved it."""

    key: str  # the setting that names it: hydra.run.dir, hydra.sweep.dir or resume
    folder: str
    unique: bool = False  # a name from the clock: made unique rather than refused
    overwrite: bool = False
    resume: bool = False
    sweep: bool = False


@dataclass
class Claim:
    folder: Path  # absolute
    target: Target
    lock_fd: int
    created: list[Path] = field(default_factory=list)  # folders this process made, outermost first
    existing: frozenset = frozenset()  # what a sweep folder held before (never removed)


_HELD: dict[Path, Claim] = {}


def absolute(folder: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(folder))))


def held(folder: str | os.PathLike) -> Claim | None:
    """This process's claim on `folder`, if it holds one."""
    return _HELD.get(absolute(folder))


def any_held() -> Path | None:
    """A folder this process holds (the command's own, for messages), or None."""
    return next(iter(_HELD), None)


def results_in(folder: Path, sweep: bool = False) -> list[str]:
    """The names of the results in `folder`: a run's files, or for a sweep folder every job
    folder holding them."""
    if not sweep:
        return [name for name in RESULT_FILES if os.path.lexists(folder / name)]
    return [f"{child.name}/" for child in sorted(folder.iterdir())
            if child.is_dir() and not child.is_symlink() and results_in(child)]


def claim(target: Target, hydra_made: bool = False, sweep: Claim | None = None) -> Claim:
    """Create, lock and check the target's folder (see the module docstring); raise ConfigError.
    `hydra_made`: Hydra has already made the folder and written its files into it. `sweep`: the
    held claim of the sweep this folder is a job of (an API sweep's), which it may be inside."""
    folder = absolute(target.folder)
    try:
        folder, created = (folder, []) if target.resume else _make(folder, target.unique)
    except OSError as err:
        raise ConfigError(target.key, target.folder, f"cannot create the output folder {_why(folder, err)}") from None
    try:
        fd = folder_lock.take(folder)
    except BlockingIOError as err:
        _remove_created(created)
        raise ConfigError(target.key, target.folder, f"{folder} is in use by another cl-run ({err}); "
                                                     "wait for it to finish or choose another folder") from None
    except OSError as err:
        _remove_created(created)
        raise WriteError(folder / LOCK, err) from None
    held_claim = Claim(folder, target, fd, created)
    _HELD[folder] = held_claim
    try:
        if not hydra_made and not target.resume:
            _check_nesting(held_claim, sweep)
        if not target.resume and not created:
            _check_earlier_results(held_claim)
            if not hydra_made:  # what a run killed before training left (Hydra's files of this run come later)
                _remove_leftovers(held_claim)
        if target.sweep:
            held_claim.existing = frozenset(os.listdir(folder))
    except (ConfigError, OSError) as err:
        release(held_claim)
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(target.key, target.folder, f"cannot read the output folder {_why(folder, err)}") from None
    return held_claim


def _check_nesting(held_claim: Claim, sweep: Claim | None) -> None:
    """Refuse a folder inside one that another cl-run holds (a sweep's), or for a sweep one with
    a folder inside it held: both would write there (a job's folder is made as the job starts)."""
    folder, target = held_claim.folder, held_claim.target
    inside = [child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()] if target.sweep else []
    for other in [*folder.parents, *inside]:
        holder = None if sweep is not None and other == sweep.folder else folder_lock.holder(other)
        if holder is not None:
            raise ConfigError(target.key, target.folder, f"{other} is in use by another cl-run (process {holder}), and "
                                                         f"{folder} is {'inside' if other in folder.parents else 'around'} it; "
                                                         "wait for it to finish or choose another folder")


def _why(folder: Path, err: OSError) -> str:
    """`/abs/folder: reason`, naming the file in the way when a parent is not a folder."""
    parent = folder
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if os.path.lexists(parent) and not parent.is_dir():
        return f"{folder}: {parent} is a file, not a folder"
    return f"{folder}: {err.strerror or err}"


def _make(folder: Path, unique: bool) -> tuple[Path, list[Path]]:
    """Make the folder and its missing parents; return it and what was made."""
    missing = [p for p in folder.parents if not os.path.lexists(p)]
    created = []
    for parent in reversed(missing):
        try:
            os.mkdir(parent)
            created.append(parent)
        except FileExistsError:  # made by another run at the same moment
            pass
    for n in range(1, 1000 if unique else 2):
        candidate = folder if n == 1 else folder.with_name(f"{folder.name}-{n}")
        try:
            os.mkdir(candidate)
            return candidate, created + [candidate]
        except FileExistsError:
            if not candidate.is_dir():
                raise NotADirectoryError(20, "exists and is not a folder") from None
            if not unique:
                return candidate, created
    raise FileExistsError(17, "no free name (999 folders of that name exist)")


def _check_earlier_results(held_claim: Claim) -> None:
    target, folder = held_claim.target, held_claim.folder
    found = results_in(folder, target.sweep)
    if not found:
        return
    if not target.overwrite and not _untrained(folder, found, target.sweep):
        what = "runs" if target.sweep else "a run"
        todo = "move it aside" if target.sweep else f"continue it with resume={folder}"
        raise ConfigError(target.key, target.folder, f"{folder} already holds {what} ({', '.join(found[:4])}"
                                                     f"{', ...' if len(found) > 4 else ''}); {todo}, choose another "
                                                     "folder, or add overwrite=true to replace it")
    try:
        for name in found:
            _remove(folder / name.rstrip("/"), inside=name.endswith("/"))
    except OSError as err:
        raise ConfigError("overwrite", True, f"cannot remove the earlier results in {_why(folder, err)}") from None


def _untrained(folder: Path, found: list[str], sweep: bool) -> bool:
    """Every run of the folder ended before an epoch finished (`status.untrained`; its process
    is gone, since the lock is ours): nothing there to lose, and its files are replaced."""
    return all(status.untrained(folder / name.rstrip("/")) for name in found) if sweep else status.untrained(folder)


def _remove(path: Path, inside: bool = False) -> None:
    """Remove a result file or folder; `inside`: a job folder, of which only the run's files go."""
    if inside:
        for name in RESULT_FILES + HYDRA_FILES:
            _remove(path / name)
        _rmdir_if_empty(path)
    elif path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _rmdir_if_empty(path: Path) -> bool:
    try:
        os.rmdir(path)
        return True
    except OSError:  # not empty, or already gone
        return False


def _remove_created(created: list[Path]) -> None:
    for path in reversed(created):
        if not _rmdir_if_empty(path):
            break


def release(held_claim: Claim) -> None:
    """Unlock; when no results were written, remove what this process put there (see above)."""
    _HELD.pop(held_claim.folder, None)
    folder, target = held_claim.folder, held_claim.target
    try:
        if not target.resume and not _has_results(held_claim):
            _discard(held_claim)
    except OSError:  # a folder made read-only or removed: leave it as it is
        pass
    try:
        os.unlink(folder / LOCK)
    except OSError:
        pass
    os.close(held_claim.lock_fd)
    _remove_created(held_claim.created)


def release_all() -> None:
    """Release every claim this process still holds (the CLI's last step, however it ends)."""
    for held_claim in list(_HELD.values()):
        release(held_claim)


def _has_results(held_claim: Claim) -> bool:
    return bool(results_in(held_claim.folder, held_claim.target.sweep))


def _discard(held_claim: Claim) -> None:
    folder = held_claim.folder
    for name in HYDRA_FILES + (REFUSED,):
        _remove(folder / name)
    if held_claim.target.sweep:
        for name in set(os.listdir(folder)) - held_claim.existing - set(LAUNCHER_FILES):
            if name in SWEEP_FILES:
                _remove(folder / name)
            elif (folder / name).is_dir() and not (folder / name).is_symlink():
                _remove(folder / name, inside=True)


def _remove_leftovers(held_claim: Claim) -> None:
    """Hydra's files of a run or sweep that never trained (the folder holds no results)."""
    held_claim.existing = frozenset()
    _discard(held_claim)
