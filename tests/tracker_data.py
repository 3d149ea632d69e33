"""Reading back what each experiment tracker stored, with that tracker's own reader, and what
the run's CSV files say it should hold: {tag: {global epoch: value}}."""

from __future__ import annotations

import json
import struct
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

INDEX = ("train_task", "epoch", "global_epoch")


def expected_scalars(run: Path) -> dict[str, dict[int, float]]:
    """The scalars a tracker should hold, read from metrics.csv and train_log.csv (written
    independently of cl_runner.trackers' own conversion)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for row in pd.read_csv(run / "metrics.csv").to_dict("records"):
        for measure in ("loss", "acc"):
            out[f"{row['split']}/{measure}/task_{row['eval_task']}"][int(row["global_epoch"])] = float(row[measure])
    for row in pd.read_csv(run / "train_log.csv").to_dict("records"):
        for column in (c for c in row if c not in INDEX):
            out[f"train/{column}"][int(row["global_epoch"])] = float(row[column])
    return dict(out)


def summary_metrics(run: Path) -> dict[str, float]:
    summary = json.loads((run / "summary.json").read_text())
    return {f"summary/{k}": summary[k] for k in ("average_accuracy", "forgetting", "backward_transfer", "forward_transfer")
            if summary.get(k) is not None}


# --- TensorBoard: its event accumulator ------------------------------------------------------


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def tensorboard_scalars(acc) -> dict[str, dict[int, list[float]]]:
    """Every value the event files hold per tag and step (after TensorBoard's own purge of
    events that a restarted writer's purge_step hides)."""
    out: dict[str, dict[int, list[float]]] = {}
    for tag in acc.Tags()["scalars"]:
        steps: dict[int, list[float]] = defaultdict(list)
        for event in acc.Scalars(tag):
            steps[event.step].append(event.value)
        out[tag] = dict(steps)
    return out


def tensorboard_hparams(acc) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind")) for key, value in values.items()}


# --- MLflow: its client -----------------------------------------------------------------------


def mlflow_runs(uri: str, experiment: str = "cl-runner") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else []


def mlflow_scalars(uri: str, run) -> dict[str, dict[int, list[float]]]:
    """Every value logged per tag and step, in logging order (a resumed run logs some steps twice)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    out = {}
    for tag in run.data.metrics:
        history = sorted(client.get_metric_history(run.info.run_id, tag), key=lambda m: (m.timestamp, m.step))
        steps: dict[int, list[float]] = defaultdict(list)
        for m in history:
            steps[m.step].append(m.value)
        out[tag] = dict(steps)
    return out


# --- W&B: the offline run's .wandb file, records as wandb's own protobuf -------------------------

_BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of checksummed chunks
_FULL, _LAST = 1, 4


def wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a .wandb file"
    records, chunks, pos = [], b"", 7  # header: ':W&B', a 2-byte magic, a version byte
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def wandb_run(folder: Path, wait: float = 60.0) -> dict:
    """The run, config, history rows, summary and exit code of an offline run folder
    (wandb/offline-run-*). W&B's service writes the file from its own process and may still be
    flushing it when the run's `finish()` has returned (cl-run's exit waits for the service; a
    test reading the file at once does not): read it again until its exit record is there, for
    up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        out = _wandb_run_so_far(folder)
        if out["exit"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _wandb_run_so_far(folder: Path) -> dict:
    out = {"run": None, "config": {}, "history": [], "summary": {}, "exit": None}
    for record in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            out["history"].append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                                   for item in record.history.item})
        elif kind == "summary":
            out["summary"].update({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                                   for item in record.summary.update})
        elif kind == "exit":
            out["exit"] = record.exit.exit_code
    return out


def wandb_scalars(history: list[dict]) -> dict[str, dict[int, list[float]]]:
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in history:
        for key, value in row.items():
            if not key.startswith("_") and key != "global_epoch" and isinstance(value, (int, float)):
                out[key][int(row["global_epoch"])].append(float(value))
    return {tag: dict(steps) for tag, steps in out.items()}
