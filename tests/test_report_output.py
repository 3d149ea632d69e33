"""`cl-report`'s output for people: task labels only when runs agree, no -0.000, ± only
with several seeds, strategy as one swept key, a self-contained report.html, and figures
laid out for a folder of mixed runs.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from cl_runner.report import content, figures

from .report_runs import make_report, settings_rows, write_run


def test_task_names_label_columns_only_when_every_completed_run_agrees(tmp_path):
    write_run(tmp_path / "runs" / "a", seed=0)
    write_run(tmp_path / "runs" / "b", seed=1)
    *_, md, html = make_report(tmp_path)
    assert settings_rows(md)[0][2:4] == ["acc task 0 (0-1-2-3-4)", "acc task 1 (5-6-7-8-9)"]
    assert "<th>acc task 0 (0-1-2-3-4)</th>" in html

    five = ["0-1", "2-3", "4-5", "6-7", "8-9"]
    write_run(tmp_path / "runs" / "c", dataset=("split_mnist5", five), matrix=np.full((5, 5), 0.5))
    *_, md, html = make_report(tmp_path, "out-2")
    header = settings_rows(md)[0]
    assert header[:3] == ["dataset", "n seeds", "failed"]
    assert header[3:8] == [f"acc task {j}" for j in range(5)]  # no names, neither dataset's
    assert "<th>acc task 0</th>" in html and "0-1-2-3-4)</th>" not in html and "(0-1)</th>" not in html
    assert "trained on different tasks" in md


def test_a_failed_run_on_other_tasks_does_not_stop_the_labels(tmp_path):
    write_run(tmp_path / "runs" / "a")
    write_run(tmp_path / "runs" / "b", dataset=("split_mnist5", ["0-1", "2-3", "4-5", "6-7", "8-9"]),
              matrix=np.full((5, 5), 0.5), summary={"status": "failed", "error": "boom"})
    *_, md, _ = make_report(tmp_path)
    assert settings_rows(md)[0][:5] == ["dataset", "n seeds", "failed", "acc task 0 (0-1-2-3-4)",
                                        "acc task 1 (5-6-7-8-9)"]


@pytest.mark.parametrize("value, text", [(-0.0004, "0.000"), (-0.0, "0.000"), (0.0004, "0.000"),
                                         (-0.0006, "-0.001"), (0.8796, "0.880"), (float("nan"), "nan")])
def test_fixed_never_writes_minus_zero(value, text):
    assert content.fixed(value) == text


def test_no_minus_zero_in_the_reports_but_full_precision_in_the_csv(tmp_path):
    # Forgetting of each run: max(R[0][0]) - R[1][0] = -0.0002 and -0.0004 (task 0 improved a hair).
    write_run(tmp_path / "runs" / "a", seed=0, matrix=[[0.9, 0.1], [0.9002, 0.8]])
    write_run(tmp_path / "runs" / "b", seed=1, matrix=[[0.9, 0.1], [0.9004, 0.8]])
    table, _, md, html = make_report(tmp_path)
    assert table.loc[0, "forgetting_mean"] == pytest.approx(-0.0003)
    assert "-0.000" not in md and "-0.000" not in html
    assert settings_rows(md)[0][5:7] == ["forgetting", "BWT"]
    assert settings_rows(md)[1][5:7] == ["0.000 ± 0.000", "0.000 ± 0.000"]  # -0.0003 and +0.0003


def test_plus_minus_only_where_a_setting_has_several_seeds(tmp_path):
    write_run(tmp_path / "runs" / "share0.1-seed0", seed=0, share=0.1)
    write_run(tmp_path / "runs" / "share0.1-seed1", seed=1, share=0.1, matrix=[[0.9, 0.1], [0.8, 0.8]])
    write_run(tmp_path / "runs" / "share0.5-seed0", seed=0, share=0.5)
    _, _, md, _ = make_report(tmp_path)
    header, two_seeds, one_seed = settings_rows(md)
    assert header[:3] == ["replay.share", "n seeds", "failed"]
    assert two_seeds[3] == "0.840 ± 0.057" and all("±" in c for c in two_seeds[3:8])
    assert one_seed[3:5] == ["0.880", "0.848"] and not any("±" in c for c in one_seed)
    assert "mean ± sample standard deviation over the seeds of a setting; a plain value where a setting " \
           "has one seed" in md

    (tmp_path / "runs" / "share0.1-seed1" / "summary.json").unlink()  # now one seed everywhere
    _, _, md, _ = make_report(tmp_path, "out-2")
    assert not any("±" in c for row in settings_rows(md) for c in row)
    assert "one seed per setting, so no standard deviation" in md and "mean ±" not in md


# --- strategy.name and strategy.plugins: one swept key --------------------------------


def test_strategy_name_and_plugins_are_one_swept_key(tmp_path):
    write_run(tmp_path / "runs" / "ewc", strategy=("ewc", ["ewc"]))
    write_run(tmp_path / "runs" / "both", strategy=("ewc_replay", ["ewc", "replay"]), matrix=[[0.9, 0.1], [0.8, 0.8]])
    table, runs, md, _ = make_report(tmp_path)
    assert "Swept keys: `strategy`." in md
    assert list(table["strategy"]) == ["ewc", "ewc_replay"]
    assert not any(c.startswith("strategy.") for c in [*table.columns, *runs.columns])
    assert runs.loc["both", "strategy"] == "ewc_replay"


def test_plugins_show_when_the_strategy_name_does_not_tell_runs_apart(tmp_path):
    write_run(tmp_path / "runs" / "one", strategy=("custom", ["ewc"]))
    write_run(tmp_path / "runs" / "two", strategy=("custom", ["ewc", "replay"]))
    write_run(tmp_path / "runs" / "none", strategy=("naive", []))
    table, *_ = make_report(tmp_path)
    assert list(table["strategy"]) == ["custom (ewc)", "custom (ewc+replay)", "naive (none)"]


# --- report.html ----------------------------------------------------------------------


class Links(HTMLParser):
    """Every URL-bearing attribute and tag of a page."""

    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [(tag, name, value) for name, value in attrs if name in ("src", "href", "srcset", "data")]


def test_report_html_is_self_contained_with_the_tables_and_figures(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"a{seed}", seed=seed, share=0.1, matrix=[[0.9, 0.1], [0.5 + seed / 10, 0.8]])
        write_run(tmp_path / "runs" / f"b{seed}", seed=seed, share=0.5, matrix=[[0.9, 0.1], [0.8, 0.8 - seed / 10]])
    write_run(tmp_path / "runs" / "broken <&>", seed=2, summary={"status": "failed", "error": "x < y & z"})
    _, _, md, html = make_report(tmp_path)
    out = tmp_path / "out"

    page = Links()
    page.feed(html)
    assert {"script", "link", "iframe"}.isdisjoint(page.tags)
    assert all(tag == "img" and name == "src" and value.startswith("data:image/png;base64,")
               for tag, name, value in page.urls), page.urls
    images = {base64.b64decode(value.split(",", 1)[1]) for _, _, value in page.urls}
    pngs = {"final_acc_vs_replay.share.png", "val_curves.png"}
    assert {p.name for p in out.glob("*.png")} == pngs
    assert images == {(out / name).read_bytes() for name in pngs}  # each figure, embedded whole
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)

    for row in settings_rows(md):  # every cell of the settings table, header included
        for cell in row:
            assert f">{cell}<" in html, cell
    assert "0.550 ± 0.071" in html
    # The failed run, escaped, in its own section.
    failed = html.split("Failed or incomplete runs", 1)[1]
    assert "broken &lt;&amp;&gt;" in failed and "x &lt; y &amp; z" in failed and "<td>failed</td>" in failed


# --- figures ---------------------------------------------------------------------------


@pytest.fixture
def kept_figures(monkeypatch):
    """The matplotlib figures the report saves, kept open for inspection."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: (kept.append(fig), fig.savefig(path, dpi=figures.DPI)))
    yield kept
    figures.plt.close("all")


def test_figures_of_mixed_runs_keep_legends_outside_and_epochs_integer(tmp_path, kept_figures):
    five = ["0-1", "2-3", "4-5", "6-7", "8-9"]
    for seed in (0, 1):
        for share in (0.1, 0.3, 0.5):
            write_run(tmp_path / "runs" / f"split-{share}-{seed}", seed=seed, share=share,
                      strategy=("replay", ["replay"]))
        write_run(tmp_path / "runs" / f"five-{seed}", seed=seed, dataset=("split_mnist5", five),
                  matrix=np.eye(5) * 0.9, strategy=("lwf", ["lwf"]))
    make_report(tmp_path)
    final, curves = kept_figures
    for fig in (final, curves):
        assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)  # legends outside the axes
        width, height = fig.get_size_inches() * figures.DPI
        assert width <= 1400 and height <= 1400
    # One line per combination of the other keys with two or more shares (lwf has one share):
    # its colour in one legend, the tasks it has as markers in the other.
    legends = sorted([t.get_text() for t in legend.get_texts()] for legend in final.legends)
    assert legends == [["dataset=split_mnist, strategy=replay"], ["task 0", "task 1", "average"]]
    assert [round(t, 3) for t in final.axes[0].get_xticks()] == [0.1, 0.3, 0.5]
    # The curves: one panel per task (5), wrapped in rows; a linear, integer epoch axis.
    panels = [ax for ax in curves.axes if ax.get_visible()]
    assert len(panels) == 5 and len({ax.get_position().y0 for ax in panels}) > 1
    for ax in panels:
        assert ax.get_xscale() == "linear"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert [ax.get_title() for ax in panels[:1]] == ["task 0"]  # names differ between runs: numbered


def test_a_key_that_only_changes_with_another_gets_no_figure(tmp_path):
    write_run(tmp_path / "runs" / "a", share=0.1, strategy=("replay", ["replay"]))
    write_run(tmp_path / "runs" / "b", share=0.5, strategy=("naive", []))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "final_acc_vs_replay.share.png").write_bytes(b"an earlier report's figure")
    make_report(tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["val_curves.png"]
    assert "final_acc_vs" not in (tmp_path / "out" / "report.md").read_text()
    assert re.search(r"!\[val_curves.png\]\(val_curves.png\)", (tmp_path / "out" / "report.md").read_text())
