"""MLflow (`logger=mlflow`): one MLflow run per cl-run run.

Where: `logger.mlflow.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a local store beside
the run folder, `<run folder's parent>/mlruns/` (`mlflow.db`, MLflow's SQLite store, and
`artifacts/`): a sweep's jobs share one store in the sweep folder, single runs share one per
parent folder (`outputs/<date>/mlruns/` with Hydra's default run folders). MLflow's own file
store is not used: MLflow 3 refuses it unless told to, as a backend in maintenance mode.

What: the config as parameters; per epoch the scalars with the global epoch as the step; at
the end the summary metrics and the figures as artifacts, and the status (FINISHED, FAILED,
KILLED for an interrupted run). The run is named after the run folder and tagged with it;
a sweep's runs are tagged `cl_runner.sweep` (the sweep folder) and `cl_runner.job`, to filter
or group them by. Resuming reopens the same run (its id and the store are kept in
trackers.json).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .base import TrackerConfig, TRACKERS, Outcome, RunInfo, Tracker, flat_config, require

STORE = "mlruns"  # the local store's folder, beside the run folder
# Stores MLflow keeps in a database through SQLAlchemy (with alembic for its schema).
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


@dataclass
class MLflowConfig(TrackerConfig):
    tracking_uri: Optional[str] = None  # null: $MLFLOW_TRACKING_URI, else <run folder's parent>/mlruns/
    experiment: str = "cl-runner"

    def check_enabled(self) -> None:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        packages = {"mlflow": "mlflow-skinny"}
        if not uri or uri.split(":", 1)[0].split("+", 1)[0] in _DATABASES:
            packages.update(sqlalchemy="sqlalchemy", alembic="alembic")
        require("mlflow", packages)


@TRACKERS.register("mlflow", MLflowConfig)
class MLflowTracker(Tracker):
    def __init__(self, cfg, run: RunInfo):
        super().__init__(cfg, run)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their start-up chatter (creating the store's tables) is not ours
            logging.getLogger(name).setLevel(logging.WARNING)
        _quiet_store_errors()
        store = run.folder.parent / STORE
        self.uri = run.saved.get("tracking_uri") or cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") \
            or f"sqlite:///{store / 'mlflow.db'}"
        local = self.uri == f"sqlite:///{store / 'mlflow.db'}"
        with _locked(store if local else None):
            _check_sqlite(self.uri)
            self.client = MlflowClient(self.uri)
            if run.saved.get("run_id"):
                self.run_id = run.saved["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
            experiment = self._experiment(cfg.experiment, (store / "artifacts").as_uri() if local else None)
        tags = {"cl_runner.run_folder": str(run.folder)}
        if run.sweep is not None:
            tags.update({"cl_runner.sweep": run.sweep, "cl_runner.job": str(run.job)})
        self.run_id = self.client.create_run(experiment, run_name=run.name, tags=tags).info.run_id
        params = [Param(key, str(value)) for key, value in flat_config(run.config).items()]
        self.client.log_batch(self.run_id, params=params)

    def _experiment(self, name: str, artifacts: str | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except MlflowException:  # another job of the sweep created it first (a shared tracking server)
            return self.client.get_experiment_by_name(name).experiment_id

    def state(self) -> dict:
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def where(self) -> str:
        return f"run {self.run_id} in {self.uri}"

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(tag, float(value), now, step) for tag, value in scalars.items()])

    def finish(self, outcome: Outcome) -> None:
        self.log(outcome.step, outcome.metrics)
        for path in outcome.figures:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=_STATUS[outcome.status])


class _RaisedAnyway(logging.Filter):
    """MLflow's SQL store logs each database error with its traceback (about 90 lines), then
    raises it; the raised one is what the run reports, in one line (`Trackers`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


def _quiet_store_errors() -> None:
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _RaisedAnyway) for f in logger.filters):
        logger.addFilter(_RaisedAnyway())


def _check_sqlite(uri: str) -> None:
    """A SQLite store that cannot be written is said at once: MLflow would retry opening it
    for about 100 s (`create_sqlalchemy_engine_with_retry`), then fail. A store another job
    holds locked is fine: it is written, and MLflow waits its turn."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return
    import sqlite3

    path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock, then a write that is rolled back: nothing changes
            db.execute(f"PRAGMA user_version = {int(db.execute('PRAGMA user_version').fetchone()[0])}")
            db.rollback()
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise OSError(f"the store {path} cannot be written ({err})") from None
    except OSError as err:
        raise OSError(f"the store {path} cannot be written ({err.strerror or err})") from None


@contextlib.contextmanager
def _locked(store: Path | None):
    """Hold the local store's lock: the jobs of a parallel sweep start together, and SQLite
    cannot take two processes creating its tables or the same experiment at once."""
    if store is None:
        yield
        return
    import fcntl  # POSIX only: imported here so that the package imports everywhere

    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
