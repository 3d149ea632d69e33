"""End-of-run checks: results that say a setting went wrong, told in plain words.

`warnings(matrix, train_log, names, chances)` returns one line per problem, each naming what
it saw and what to change; the run logs them as its last lines and keeps them in
summary.json (`warnings`). The check today: a task that was not learnt -- its test accuracy
right after its own training (the accuracy matrix's diagonal) stays closer to chance than to
1 -- while an extra loss term (a penalty such as EWC's) outweighed the cross-entropy at least
`DOMINANT` times during its training: the penalty held the weights where the earlier tasks
left them, and the new task could not be learnt. `cl-run strategy=ewc ewc.alpha=1e8` on the
default 64-unit MLP is the case in point (the notebook's EWC uses 256 units). Chance is
written as the figures mark it (1/10: a guess among the single head's ten outputs), and the
advice names only what would change something for the run's own config (`cfg`): a bigger
model only to a run on a smaller MLP.
"""

from __future__ import annotations

import re

import numpy as np

DOMINANT = 10.0  # an extra term this many times the cross-entropy leaves the task no room

# What weighs each extra loss term, and how to make it lighter (ewc: `_ewc_fix`).
FIXES = {
    "si": "lower si.c",
    "lwf": "lower lwf.alpha",
    "der": "lower der.alpha",
    "derpp": "lower der.beta",
    "icarl": "lower icarl.alpha",
}
EWC_ALPHA_FOR_MLP64 = 1e7  # measured on real MNIST, 50 epochs: task accuracies 0.901 and 0.679
ROOMY_WIDTH = 256  # the notebook's EWC model (model=mlp256)


def warnings(matrix: np.ndarray, train_log, names: list[str], chances: list[float], cfg=None) -> list[str]:
    """The problems this run's results show (none for a run with one stage, e.g. joint).
    `train_log`: train_log.csv's rows, as a `cl_runner.table.Table` or a pandas DataFrame;
    `chances`: per task, what a uniform guess scores; `cfg`: the run's config, which the
    advice is fitted to (None: advice for the default 64-unit MLP)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        return []
    terms = [c for c in train_log.columns if c not in ("train_task", "epoch", "global_epoch", "loss", "ce", "seconds")]
    found = []
    for task in range(matrix.shape[0]):
        own, chance = float(matrix[task, task]), chances[task]
        if own >= chance + (1 - chance) / 2:
            continue  # learnt (at least half way from chance to perfect)
        rows = train_log[np.asarray(train_log["train_task"]) == task]
        ce = np.asarray(rows["ce"], dtype=float)
        for term in terms:
            values = np.asarray(rows[term], dtype=float)
            ratio = np.divide(values, ce, out=np.full_like(values, np.nan), where=ce > 0)
            if np.isnan(ratio).all() or np.nanmax(ratio) < DOMINANT:
                continue
            worst = int(np.nanargmax(ratio))
            fix = _ewc_fix(cfg) if term == "ewc" else FIXES.get(term, f"lower the weight of the {term} term")
            found.append(
                f"warning: task {task} ({names[task]}) was not learnt: {own:.3f} test accuracy right after its own "
                f"training (chance {_fraction(chance)}), while the {term} term outweighed the cross-entropy "
                f"{np.nanmax(ratio):,.0f} times ({_amount(values[worst])} vs {_amount(ce[worst])} in epoch "
                f"{int(np.asarray(rows['epoch'])[worst])}): the penalty held the weights in place; {fix}"
            )
    return found


def _amount(value: float) -> str:
    """18,100 or 12.4: three figures, thousands separated, no exponent."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ewc_fix(cfg) -> str:
    """What would lighten EWC's penalty for this run: a lower ewc.alpha (with the value measured
    on the 64-unit MLP where that is the model), more room for an MLP narrower than 256 units,
    and more epochs."""
    model = cfg.model if cfg is not None else {"name": "mlp", "width": 64, "depth": 1}
    alpha = float(cfg.ewc.alpha) if cfg is not None else None
    mlp64 = model["name"] == "mlp" and model["width"] == 64 and model["depth"] == 1
    if mlp64 and (alpha is None or alpha > EWC_ALPHA_FOR_MLP64):
        lower = f"lower ewc.alpha (on this 64-unit MLP, e.g. ewc.alpha={_number(EWC_ALPHA_FOR_MLP64)})"
    else:
        lower = "lower ewc.alpha" + (f" (now {_number(alpha)})" if alpha is not None else "")
    roomy = model["name"] == "mlp" and model["width"] < ROOMY_WIDTH
    more_room = f", give the model more room (model=mlp{ROOMY_WIDTH}, as experiment=ewc does)" if roomy else ""
    return f"{lower}{more_room} or train longer"


def _number(value: float) -> str:
    """1e8 as the command line writes it, not 1e+08."""
    return re.sub(r"e\+?0*(\d)", r"e\1", f"{value:g}").replace("e-0", "e-")


def _fraction(chance: float) -> str:
    """1/10 for 0.1, as the figures label chance; three decimals when it is no such fraction."""
    classes = round(1 / chance) if chance > 0 else 0
    return f"1/{classes}" if classes and abs(chance - 1 / classes) < 1e-9 else f"{chance:.3f}"
