"""A finished run's folder read back in Python: what `cl_runner.api.run` returns.

`Result.load(folder)` works on any run folder, written by `cl-run` or by the API:

- `metrics`: metrics.csv as a pandas DataFrame (one row per evaluation: train_task, epoch,
  eval_task, split, loss, acc, ...), exactly as `pd.read_csv` reads the file;
- `accuracy_matrix`: test accuracy after each training stage (rows, `after_task`) on each
  task (columns, named after the tasks);
- `train_log`: train_log.csv (one row per epoch, with each loss term);
- `summary`: summary.json as a dict (status, final accuracies, forgetting, warnings, ...);
- `config`: the config the run saved (config.yaml); `overrides`: the overrides it was given;
- `figures`: {"accuracy_matrix": path, "curves": path} for the PNG files there are, and
  `show()` to display them in a notebook.

Every file is read when first asked for, so a Result of a large sweep costs little.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

FIGURES = {"accuracy_matrix": "accuracy_matrix.png", "curves": "curves.png"}


@dataclass(eq=False)
class Result:
    """One run's results, read from its folder (see the module docstring)."""

    folder: Path
    summary: dict
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folder: str | Path) -> Result:
        """The run in `folder` (FileNotFoundError when it holds no summary.json)."""
        folder = Path(folder).absolute()
        summary = json.loads((folder / "summary.json").read_text())
        recorded = folder / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(recorded)] if recorded.is_file() else []
        return cls(folder, summary, overrides)

    @property
    def status(self) -> str:
        """completed, failed, interrupted (or running, for a run still going elsewhere)."""
        return str(self.summary.get("status"))

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "metrics.csv")

    @functools.cached_property
    def train_log(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "train_log.csv")

    @functools.cached_property
    def accuracy_matrix(self) -> pd.DataFrame:
        """Row `after_task` i: the test accuracy of every task after training stage i."""
        matrix = pd.read_csv(self.folder / "accuracy_matrix.csv", index_col="after_task")
        names = self.summary.get("tasks") or []
        if len(names) == matrix.shape[1]:
            matrix.columns = [str(name) for name in names]
        return matrix

    @functools.cached_property
    def config(self) -> DictConfig:
        return OmegaConf.load(self.folder / "config.yaml")

    @property
    def figures(self) -> dict[str, Path]:
        return {name: self.folder / file for name, file in FIGURES.items() if (self.folder / file).is_file()}

    def show(self, *names: str) -> None:
        """Display the run's figures (or those named) in a notebook."""
        from IPython.display import Image, display

        for name, path in self.figures.items():
            if not names or name in names:
                display(Image(filename=str(path)))

    def row(self) -> dict:
        """The run in one row: its folder's name, its overrides, what ran, its final test accuracy
        per task and its metrics."""
        names = self.summary.get("tasks") or []
        final = self.summary.get("final_test_acc") or []
        row = {"job": self.folder.name, "overrides": " ".join(self.overrides), "what": self.what(), "status": self.status}
        row.update({f"acc {names[j] if j < len(names) else j}": acc for j, acc in enumerate(final)})
        for key in ("average_accuracy", "forgetting", "backward_transfer"):
            row[key] = self.summary.get(key)
        row["folder"] = str(self.folder)
        return row

    def what(self) -> str | None:
        """What ran, from the config it saved: `ewc alpha=1e8 · mlp width=256 depth=1 · 50 epochs per task`."""
        from .run_info import config_text  # the model and strategy tables (torch)

        try:
            return config_text(self.config)
        except OSError:  # a run that failed before it saved its config
            return None

    def __repr__(self) -> str:
        final = self.summary.get("final_test_acc")
        results = (f"final test acc {[round(a, 3) for a in final]}, mean {self.summary['average_accuracy']:.3f}"
                   if final and self.summary.get("average_accuracy") is not None else f"status {self.status}")
        return f"Result({self.summary.get('strategy')}: {results}; {self.folder})"


def table(results: list[Result]) -> pd.DataFrame:
    """One row per run (`Result.row`): the comparison of a sweep."""
    return pd.DataFrame([r.row() for r in results])
