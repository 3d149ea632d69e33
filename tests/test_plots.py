"""The run's figures: drawn for 1 to 20 tasks, with and without loss terms, carrying the run's
identity, one colour per task in every panel, no spikes from zero penalties (read back from
the matplotlib objects, not from pixels); and `run_info`, which words the identity."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from cl_runner import plots
from cl_runner.run_info import RunInfo, describe, strategy_text

from .conftest import compose_cfg


def synthetic_run(tasks: int, epochs: int = 3, terms: tuple[str, ...] = (), huge: bool = False):
    """metrics.csv and train_log.csv tables shaped as a sequential run writes them: the
    untrained model at epoch 0, validation every epoch, test at each task's last epoch; each
    term is 0 during task 0 (nothing to protect yet), as EWC's is."""
    rng = np.random.default_rng(tasks)
    metrics, log = [], []
    for split in ("val", "test"):
        metrics += [dict(train_task=-1, epoch=0, eval_task=j, split=split, loss=2.3, acc=0.1, global_epoch=0)
                    for j in range(tasks)]
    global_epoch = 0
    for t in range(tasks):
        for epoch in range(1, epochs + 1):
            global_epoch += 1
            row = dict(train_task=t, epoch=epoch, global_epoch=global_epoch, ce=1.0 / (epoch + t))
            for term in terms:
                row[term] = 0.0 if t == 0 else (1e5 if huge else 0.5) / epoch
            row["loss"] = sum(row[k] for k in ("ce", *terms))
            log.append({**row, "seconds": 0.1})
            splits = ("val", "test") if epoch == epochs else ("val",)
            metrics += [dict(train_task=t, epoch=epoch, eval_task=j, split=split, loss=float(rng.uniform(0, 3)),
                             acc=float(rng.uniform(0, 1)), global_epoch=global_epoch)
                        for split in splits for j in range(tasks)]
    columns = ["train_task", "epoch", "global_epoch", "loss", "ce", *terms, "seconds"]
    return pd.DataFrame(metrics), pd.DataFrame(log)[columns]


def info_for(tasks: int, chance: int = 10) -> RunInfo:
    names = [f"{2 * t}-{2 * t + 1}" for t in range(tasks)]
    return RunInfo(["ewc alpha=1e8 · mlp width=256 depth=1", f"split_mnist: {tasks} tasks, class-IL · seed 7"],
                   "average accuracy 0.812 · forgetting 0.100 · BWT -0.100", names, [chance] * tasks, names)


def lines(ax, prefix: str) -> dict[str, object]:
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid() and line.get_gid().startswith(prefix)}


@pytest.mark.parametrize("tasks,terms", [(1, ()), (2, ("ewc",)), (5, ()), (5, ("ewc", "replay")), (12, ("ewc",))])
def test_curves_for_any_number_of_tasks(tmp_path, tasks, terms):
    metrics, train_log = synthetic_run(tasks, terms=terms)
    fig = plots.plot_curves(metrics, train_log, info_for(tasks), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    title = fig.get_suptitle()
    for words in ("ewc alpha=1e8", "mlp width=256 depth=1", f"split_mnist: {tasks} tasks", "class-IL", "seed 7",
                  "average accuracy 0.812", "forgetting 0.100", "BWT -0.100"):
        assert words in title
    ax_train, ax_loss, ax_acc = fig.axes
    # One colour per task, the same task the same colour in every panel.
    colours = [to_hex(lines(ax_acc, f"val task {t}")[f"val task {t}"].get_color()) for t in range(tasks)]
    assert len(set(colours)) == tasks
    for t in range(tasks):
        assert to_hex(lines(ax_loss, f"val task {t}")[f"val task {t}"].get_color()) == colours[t]
        assert to_hex(lines(ax_train, f"loss stage {t}")[f"loss stage {t}"].get_color()) == colours[t]
        assert to_hex(lines(ax_acc, f"test task {t}")[f"test task {t}"].get_color()) == colours[t]
    # The untrained model at epoch 0; test points at each task's last epoch.
    assert lines(ax_acc, "val task 0")["val task 0"].get_xdata()[0] == 0
    assert list(lines(ax_acc, "test task 0")["test task 0"].get_xdata()) == [3 * t for t in range(tasks + 1)]
    if tasks > 1:  # a later task's curve before its own training is drawn apart (dashed)
        assert lines(ax_acc, "val before task 1")["val before task 1"].get_linestyle() == "--"
    # Chance level, curves at 0 and 1 visible, whole epochs.
    assert lines(ax_acc, "chance")["chance"].get_ydata()[0] == pytest.approx(0.1)
    low, high = ax_acc.get_ylim()
    assert low < 0 and high > 1
    assert all(float(x).is_integer() for x in ax_acc.get_xticks())
    # A term is not drawn for a task where it is zero throughout (EWC's during task 0).
    for term in terms:
        drawn = lines(ax_train, f"{term} stage")
        assert f"{term} stage 0" not in drawn and len(drawn) == tasks - 1


def test_a_huge_penalty_gets_a_log_axis_without_spikes_from_zeros(tmp_path):
    metrics, train_log = synthetic_run(3, terms=("ewc",), huge=True)
    train_log.loc[train_log.index[4], "ewc"] = 0.0  # one zero epoch inside a penalised task
    fig = plots.plot_curves(metrics, train_log, info_for(3), tmp_path / "curves.png")
    ax_train = fig.axes[0]
    assert ax_train.get_yscale() == "log"
    for line in lines(ax_train, "ewc stage").values():
        values = np.asarray(line.get_ydata(), dtype=float)
        assert not (values <= 0).any()  # zeros are gaps, not drops to the axis floor
    assert np.isnan(np.asarray(lines(ax_train, "ewc stage 1")["ewc stage 1"].get_ydata(), dtype=float)).sum() == 1
    small = plots.plot_curves(*synthetic_run(3, terms=("ewc",)), info_for(3), tmp_path / "small.png")
    assert small.axes[0].get_yscale() == "linear"


def test_the_log_axis_title_is_drawn_where_matplotlib_would_place_it(tmp_path, monkeypatch):
    # plot_curves fixes that title's height to save matplotlib's search for an offset text a
    # log axis cannot have; the figure must come out the same, pixel for pixel.
    from matplotlib.axes import Axes

    run = synthetic_run(3, terms=("ewc",), huge=True)
    plots.plot_curves(*run, info_for(3), tmp_path / "fixed.png")
    real_set_title = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda ax, *args, y=None, **kwargs: real_set_title(ax, *args, **kwargs))
    fig = plots.plot_curves(*run, info_for(3), tmp_path / "placed.png")
    assert fig.axes[0].get_yscale() == "log"
    assert (tmp_path / "fixed.png").read_bytes() == (tmp_path / "placed.png").read_bytes()


def test_one_epoch_tasks_are_drawn_as_points(tmp_path):
    metrics, train_log = synthetic_run(4, epochs=1, terms=("ewc",))
    fig = plots.plot_curves(metrics, train_log, info_for(4), tmp_path / "curves.png")
    drawn = [line for gid, line in lines(fig.axes[0], "").items() if "stage" in gid]
    assert len(drawn) == 4 + 4 + 3  # each task's total and cross-entropy; the penalty of tasks 1-3
    for line in drawn:
        assert line.get_marker() not in (None, "None", "")


def test_joint_training_is_one_stage_that_trains_every_task(tmp_path):
    metrics, train_log = synthetic_run(1, epochs=4)
    train_log = train_log.copy()
    info = info_for(3)
    info.stage_names = ["joint"]
    extra = metrics[metrics["eval_task"] == 0].copy()
    metrics = pd.concat([metrics, extra.assign(eval_task=1), extra.assign(eval_task=2)])
    fig = plots.plot_curves(metrics, train_log, info, tmp_path / "curves.png")
    ax_acc = fig.axes[2]
    assert not lines(ax_acc, "val before")  # no task waits for its turn
    assert to_hex(lines(fig.axes[0], "loss stage 0")["loss stage 0"].get_color()) == "#000000"
    matrix = plots.plot_accuracy_matrix(np.full((1, 3), 0.9), info, tmp_path / "matrix.png")
    assert [t.get_text() for t in matrix.axes[0].get_yticklabels()] == ["joint"]


@pytest.mark.parametrize("tasks", [2, 5, 12, 20])
def test_accuracy_matrix_is_labelled_for_2_to_20_tasks(tmp_path, tasks):
    matrix = np.tril(np.full((tasks, tasks), 0.95)) + np.triu(np.full((tasks, tasks), 0.01), 1)
    fig = plots.plot_accuracy_matrix(matrix, info_for(tasks), tmp_path / "matrix.png")
    assert (tmp_path / "matrix.png").is_file()
    ax = fig.axes[0]
    assert "ewc alpha=1e8" in fig.get_suptitle() and "average accuracy 0.812" in fig.get_suptitle()
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == tasks * tasks
    assert cells[0] == ("95" if tasks > 12 else "0.95")  # two digits where "0.95" would not fit
    assert len(ax.get_xticklabels()) == tasks and len(ax.get_yticklabels()) == tasks
    width, height = fig.get_size_inches()
    assert width <= 14 and height <= 14  # a 20-task matrix still fits a screen


def fake_benchmark(scenario: str, classes: list[list[int]], num_outputs: int):
    tasks = [SimpleNamespace(name="-".join(map(str, c)), classes=c) for c in classes]
    return SimpleNamespace(tasks=tasks, scenario=scenario, num_outputs=num_outputs)


def test_describe_words_the_run_from_config_and_summary():
    cfg = compose_cfg(["strategy=ewc", "model=mlp256", "seed=3", "train.epochs=3"])
    summary = {"status": "completed", "average_accuracy": 0.8123, "forgetting": 0.1, "backward_transfer": -0.1,
               "forward_transfer": None, "parameters": 203530}
    info = describe(cfg, summary, fake_benchmark("class", [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], 10))
    assert info.identity[0] == "ewc alpha=1e8 · mlp width=256 depth=1 (203,530 parameters)"
    assert info.identity[1] == "split_mnist: 2 tasks, class-IL · 3 epochs per task · seed 3"
    assert info.results == "average accuracy 0.812 · forgetting 0.100 · BWT -0.100"
    assert info.chance_classes == [10, 10] and info.stage_names == info.task_names == ["0-1-2-3-4", "5-6-7-8-9"]
    failed = describe(cfg, {"status": "failed"}, fake_benchmark("class", [[0, 1], [2, 3]], 10))
    assert "failed" in failed.results


def test_chance_is_a_guess_among_the_classes_an_example_is_scored_among():
    cfg = compose_cfg(["dataset=split_mnist5", "scenario=task"])
    task_il = describe(cfg, {}, fake_benchmark("task", [[0, 1], [2, 3], [4, 5, 6]], 10))
    assert task_il.chance_classes == [2, 2, 3]  # the other tasks' logits are masked
    domain = describe(cfg, {}, fake_benchmark("domain", [[0, 1], [0, 1]], 2))
    assert domain.chance_classes == [2, 2]


@pytest.mark.parametrize("overrides,expected", [
    (["strategy=naive"], "naive"),
    (["strategy=ewc_replay"], "ewc_replay (ewc alpha=1e8; replay share=0.1)"),
    (["experiment=scratch"], "joint task_shares=[0.01, 1.0]"),
    (["strategy=replay", "replay.per_class=20"], "replay per_class=20"),  # share is then unused
    (["strategy=replay", "replay.policy=reservoir", "replay.memory_size=500"], "replay policy=reservoir memory_size=500"),
    (["strategy=derpp"], "derpp (der memory_size=500 alpha=0.5 plus=true)"),
    (["strategy=ewc", "ewc.alpha=5e8", "ewc.mode=online"], "ewc alpha=5e8 mode=online"),
])
def test_strategy_settings_are_the_strength_and_what_differs_from_defaults(overrides, expected):
    assert strategy_text(compose_cfg(overrides)) == expected
