"""`cl-report` on damaged or contradictory runs: a metrics.csv cut short, with missing or
unparseable fields, or duplicate rows, and a summary.json that disagrees with metrics.csv,
make the run incomplete or inconsistent: listed with the reason, never averaged in; so does
a summary.json whose fields have the wrong shape. A disk that fills up while the report is
written: exit 5, one line, no file of the report half-written.
"""

from __future__ import annotations

import json

import pytest

from cl_runner.report import metrics_csv

from .report_runs import make_report, settings_rows, write_run

# --- damaged metrics.csv: listed as incomplete, never averaged in --------------------


def cut_mid_number(text: str) -> str:
    assert text.endswith("1,2,1,test,0.5,0.848,4,100\r\n")
    return text.rstrip("\r\n")[: -len("848,4,100")]  # the last line is now "1,2,1,test,0.5,0."


def drop_fields(text: str) -> str:
    lines = text.splitlines()
    return "\r\n".join(lines[:-1] + [",".join(lines[-1].split(",")[:5])]) + "\r\n"


def empty_acc(text: str) -> str:
    lines = text.splitlines()
    fields = lines[-3].split(",")
    fields[5] = ""
    return "\r\n".join(lines[:-3] + [",".join(fields)] + lines[-2:]) + "\r\n"


def unparseable_acc(text: str) -> str:
    return text.replace(",0.848,", ",0.8.48,")


def duplicate_row(text: str) -> str:
    last = text.splitlines()[-1].split(",")
    last[5] = "0.0"  # a second process's copy of the same (task, epoch, eval task, split)
    return text + ",".join(last) + "\r\n"


def no_final_newline(text: str) -> str:
    return text.rstrip("\r\n")


@pytest.mark.parametrize("damage, reason", [
    (cut_mid_number, "is cut short (the file does not end with a newline)"),
    (drop_fields, "has 5 fields, the header 8"),
    (empty_acc, "acc '' is not a number in [0, 1]"),
    (unparseable_acc, "acc '0.8.48' is not a number in [0, 1]"),
    (duplicate_row, "has 2 rows for train_task=1, epoch=2, eval_task=1, split=test"),
    (no_final_newline, "does not end with a newline"),
])
def test_a_damaged_metrics_csv_makes_the_run_incomplete(tmp_path, damage, reason):
    write_run(tmp_path / "runs" / "good", seed=0)
    bad = write_run(tmp_path / "runs" / "damaged", seed=1)
    metrics = bad / "metrics.csv"
    metrics.write_bytes(damage(metrics.read_bytes().decode()).encode())

    table, runs, md, html = make_report(tmp_path)
    assert runs.loc["damaged", "status"] == "incomplete" and not runs.loc["damaged", "ok"]
    assert reason in runs.loc["damaged", "problem"]
    assert runs.loc["good", "status"] == "completed"
    # The setting holds only the good run: 0.880 / 0.848, not a mean with a half-read run.
    assert len(table) == 1 and table.loc[0, "n_seeds"] == 1 and table.loc[0, "n_failed"] == 1
    assert table.loc[0, "final_acc_task0_mean"] == pytest.approx(0.88)
    assert table.loc[0, "final_acc_task1_mean"] == pytest.approx(0.848)
    assert settings_rows(md)[1][2:4] == ["0.880", "0.848"]  # (no swept keys: n seeds, failed, acc...)
    failed = md.split("## Failed or incomplete runs", 1)[1]
    line = next(line for line in failed.splitlines() if "damaged" in line)
    assert "| incomplete |" in line and reason.replace("|", "\\|") in line
    assert reason.replace("'", "&#x27;") in html


def test_the_cut_row_of_the_review_is_refused_with_a_six_column_header(tmp_path):
    """The fault-injection finding itself: `1,3,1,test,0.3,0.` as the last line."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("train_task,epoch,eval_task,split,loss,acc\n0,3,0,test,0.3,0.9\n"
                                        "1,3,1,test,0.3,0.")
    with pytest.raises(metrics_csv.MalformedMetrics, match="line 3 is cut short"):
        metrics_csv.read_metrics(folder / "metrics.csv")


def test_a_whole_metrics_csv_reads_as_numbers(tmp_path):
    folder = write_run(tmp_path / "run")
    table = metrics_csv.read_metrics(folder / "metrics.csv")
    assert table["acc"].dtype == float and table["train_task"].dtype == "int64"
    assert len(table) == 4 + 2 * 3 * 2  # untrained (val, test) + 2 tasks x (val, val + test)


# --- summary.json must agree with metrics.csv --------------------------------------


@pytest.mark.parametrize("changes, dropped, agrees", [
    ({"final_test_acc": [0.89, 0.848]}, (), False),  # the final row differs
    ({"accuracy_matrix": [[0.5, 0.1], [0.88, 0.848]]}, (), False),  # an earlier row differs
    ({"accuracy_matrix": [[0.88, 0.848]]}, (), False),  # another shape
    ({"final_test_acc": [0.8800004, 0.8479996]}, (), True),  # within summary.json's rounding
    ({}, ("final_test_acc", "accuracy_matrix"), True),  # an older cl-run wrote neither
])
def test_a_run_whose_summary_disagrees_with_its_metrics_is_inconsistent(tmp_path, changes, dropped, agrees):
    write_run(tmp_path / "runs" / "other", seed=0, matrix=[[0.9, 0.2], [0.7, 0.8]])
    checked = write_run(tmp_path / "runs" / "checked", seed=1, summary=changes)
    own = json.loads((checked / "summary.json").read_text())
    (checked / "summary.json").write_text(json.dumps({k: v for k, v in own.items() if k not in dropped}))

    table, runs, md, _ = make_report(tmp_path)
    if agrees:
        assert runs.loc["checked", "status"] == "completed" and table.loc[0, "n_seeds"] == 2
        assert table.loc[0, "final_acc_task0_mean"] == pytest.approx((0.88 + 0.7) / 2)
    else:
        assert runs.loc["checked", "status"] == "inconsistent" and not runs.loc["checked", "ok"]
        assert "disagrees with metrics.csv" in runs.loc["checked", "problem"]
        assert table.loc[0, "n_seeds"] == 1 and table.loc[0, "n_failed"] == 1
        assert table.loc[0, "final_acc_task0_mean"] == pytest.approx(0.7)
        assert "| inconsistent |" in md.split("## Failed or incomplete runs", 1)[1]


# --- a summary.json of the wrong shape; a disk that fills up while the report is written ----


@pytest.mark.parametrize("change, reason", [
    ({"tasks": 5}, "summary.json unreadable (its tasks are 5, not a list of task names)"),
    ({"status": "failed", "error": {"why": "a dict"}}, '{"why": "a dict"}'),
])
def test_a_summary_of_the_wrong_shape_is_listed_not_a_traceback(change, reason, tmp_path):
    write_run(tmp_path / "runs" / "good")
    write_run(tmp_path / "runs" / "odd", summary=change)
    table, runs, md, html = make_report(tmp_path)
    assert runs.loc["good", "status"] == "completed" and reason in runs.loc["odd", "problem"]
    assert int(table["n_seeds"].iloc[0]) == 1  # the odd run is not averaged in
    assert reason.replace('"', "&quot;") in html or reason in html


def _runs_for_a_full_report(tmp_path):
    for seed in (0, 1):  # two seeds of two settings: the figures are drawn too
        write_run(tmp_path / "runs" / f"a{seed}", seed=seed, share=0.1)
        write_run(tmp_path / "runs" / f"b{seed}", seed=seed, share=0.5)


@pytest.mark.parametrize("failing", ["report.html", "report.md", "report.csv", "val_curves.png"])
def test_a_full_disk_leaves_no_half_written_report_file(failing, tmp_path, monkeypatch, capsys):
    """Each write stops half way with ENOSPC: exit 5, one line, and every file of the earlier
    report is as it was or replaced whole; no temporary file."""
    import errno
    from pathlib import Path

    import matplotlib.figure

    from cl_runner.report import cli

    _runs_for_a_full_report(tmp_path)
    out = tmp_path / "runs"
    cli.main([str(out)])
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"report.html", "report.md", "report.csv", "val_curves.png"} <= set(before)

    def half_then_full(path, data: bytes):
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    real_write_text, real_savefig = Path.write_text, matplotlib.figure.Figure.savefig

    def write_text(self, text, *args, **kwargs):
        if self.name.endswith(Path(failing).suffix) and failing.split(".")[0] in self.name:
            half_then_full(self, text.encode())
        return real_write_text(self, text, *args, **kwargs)

    def savefig(self, path, *args, **kwargs):
        if failing.split(".")[0] in Path(path).name:
            real_savefig(self, path, *args, **kwargs)
            half_then_full(path, Path(path).read_bytes())
        return real_savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    import pandas as pd

    real_to_csv = pd.DataFrame.to_csv

    def to_csv(self, path=None, *args, **kwargs):
        if failing == "report.csv" and path is not None and "report" in Path(path).name:
            half_then_full(path, real_to_csv(self, None, *args, **kwargs).encode())
        return real_to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(out)])
    assert exit_.value.code == cli.EXIT_WRITE == 5
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cl-report: error: the report could not be written: "), lines
    assert failing.split(".")[0] in lines[0] and "No space left on device" in lines[0]
    now = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert not [name for name in now if ".tmp" in name]
    for name, data in now.items():  # whole: the earlier file, or a complete new one
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), name
        elif name in before:
            assert data == before[name] or name != failing, name
    assert now[failing] == before[failing] if failing in now else True
