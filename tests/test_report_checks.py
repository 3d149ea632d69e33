"""`cl-report` on damaged or contradictory runs: a metrics.csv cut short, with missing or
unparseable fields, or duplicate rows, and a summary.json that disagrees with metrics.csv,
make the run incomplete or inconsistent: listed with the reason, never averaged in.
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
