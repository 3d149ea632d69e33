"""TensorBoard (`logger=tensorboard`): event files in `<run folder>/tensorboard/`.

Written with PyTorch's own `SummaryWriter` (it needs the `tensorboard` package). The scalars
go under their tags with the global epoch as the step; the config goes in as hyperparameters
(the HParams dashboard, with the summary metrics as its metrics) and as YAML text; at the end
the summary metrics, summary.json as text, and the figures as images. A sweep's runs lie side
by side (`tensorboard --logdir <sweep folder>` shows `0/tensorboard`, `1/tensorboard`, ...).
Resuming writes into the same folder with `purge_step`, so the epochs that are logged again
replace the interrupted ones instead of doubling them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from .base import TrackerConfig, SUMMARY_TAGS, TRACKERS, Outcome, RunInfo, Tracker, flat_config, require

FOLDER = "tensorboard"


@dataclass
class TensorBoardConfig(TrackerConfig):
    def check_enabled(self) -> None:
        require("tensorboard", {"tensorboard": "tensorboard"})


@TRACKERS.register("tensorboard", TensorBoardConfig)
class TensorBoardTracker(Tracker):
    def __init__(self, cfg, run: RunInfo):
        super().__init__(cfg, run)
        from torch.utils.tensorboard import SummaryWriter

        resumed = run.resumed_at is not None
        _quiet_writer_threads()
        self.writer = SummaryWriter(log_dir=str(run.folder / FOLDER), purge_step=run.resumed_at + 1 if resumed else None)
        if not resumed:
            self._hyperparameters(run.config)

    def _hyperparameters(self, config: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                  for key, value in flat_config(config).items()}
        # The low-level form of add_hparams, which would open a second run folder of its own.
        for summary in hparams(values, {tag: 0.0 for tag in SUMMARY_TAGS}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```")

    def where(self) -> str:
        return str(self.run.folder / FOLDER)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()  # so that a TensorBoard watching the run sees each epoch

    def finish(self, outcome: Outcome) -> None:
        import matplotlib.image

        self.log(outcome.step, outcome.metrics)
        self.writer.add_text("summary", "```\n" + json.dumps(outcome.summary, indent=2) + "\n```", global_step=outcome.step)
        for path in outcome.figures:
            self.writer.add_image(f"figures/{path.stem}", matplotlib.image.imread(path), outcome.step, dataformats="HWC")
        self.writer.close()
        failed = _writer_error(self.writer)  # close() does not ask its thread how the last writes went
        if failed is not None:
            raise failed


def _writer_error(writer) -> BaseException | None:
    """The error the writer's thread stopped with, if any (tensorboard's internals, looked up
    defensively: an older or newer tensorboard without them is not checked)."""
    async_writer = getattr(getattr(getattr(writer, "file_writer", None), "event_writer", None), "_async_writer", None)
    return getattr(getattr(async_writer, "_worker", None), "exception", None)


def _quiet_writer_threads() -> None:
    """tensorboard's writer thread keeps the error it fails with (a full disk, a folder made
    read-only) for the run's next call, which raises it and switches the tracker off in one
    line (`Trackers`), then raises it again in the thread, which Python prints as a thread
    traceback: not printed here, once it is kept."""
    previous = threading.excepthook
    if getattr(previous, "kept_for_the_run", False):
        return

    def hook(args) -> None:
        if getattr(args.thread, "exception", None) is args.exc_value and "tensorboard" in type(args.thread).__module__:
            return
        previous(args)

    hook.kept_for_the_run = True
    threading.excepthook = hook
