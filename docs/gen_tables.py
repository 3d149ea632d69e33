"""The docs' other generated tables: exit codes (cl_runner/errors.py), make targets and their
variables (the Makefile's `## ` lines and `?=` defaults), `cl-run --help` (its template in conf/),
the measured speed (every bench/results-*.json and bench/startup-*.json, so a new device's
file, e.g. results-cuda.json, gets its own table) and the accuracies measured on real Split
Fashion-MNIST (docs/results/split-fashion-mnist.csv). See gen_pages.py for how parts are marked.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PHASES = ["import", "config", "data", "model", "training", "evaluation", "outputs", "exit", "wall"]


def exit_codes() -> str:
    """Each exit code: its constant in errors.py, the error classes that carry it, its comment."""
    source = (REPO / "cl_runner" / "errors.py").read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    codes = {"0": ("", "the run (or sweep) finished", [])}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.targets[0].id.startswith("EXIT_"):
            comment = lines[node.lineno - 1].partition("#")[2].strip()
            codes[str(node.value.value)] = (node.targets[0].id, comment, [])
    by_name = {name: code for code, (name, _, _) in codes.items()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "exit_code" and isinstance(stmt.value, ast.Name):
                    doc = (ast.get_docstring(node) or "").replace("\n", " ").split(". ")[0].rstrip(".")
                    codes[by_name[stmt.value.id]][2].append((node.name, doc))
    rows = ["| code | constant | raised as | meaning |", "|---|---|---|---|"]
    for code, (name, comment, classes) in sorted(codes.items(), key=lambda c: int(c[0])):
        raised = "<br>".join(f"`{cls}`" for cls, _ in classes) or "—"
        meaning = comment or "; ".join(doc for _, doc in classes)
        rows.append(f"| [{code}](#exit-{code}) | {f'`{name}`' if name else '—'} | {raised} | {meaning} |")
    return "\n".join(rows)


def make_targets() -> str:
    text = (REPO / "Makefile").read_text()
    experiments = re.search(r"^EXPERIMENTS = (.*)$", text, re.M).group(1).split()
    rows = ["| target | what |", "|---|---|"]
    for target, what in re.findall(r"^([a-zA-Z_%-]+):.*?## (.*)$", text, re.M):
        if target == "$(addprefix exp-,$(EXPERIMENTS))" or "(see exp-NAME" in what:
            continue
        rows.append(f"| `make {target}` | {what.replace('|', chr(92) + '|')} |")
    rows.append(f"| `make exp-NAME` | one notebook experiment (`experiment=NAME`): {', '.join(f'`{e}`' for e in experiments)} |")
    return "\n".join(rows)


def make_variables() -> str:
    """Each `NAME ?= default` of the Makefile with the comment lines just above it."""
    rows, comment = ["| variable | default | what |", "|---|---|---|"], []
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
            continue
        match = re.match(r"^(?:export )?([A-Z_]+) \?= ?(.*)$", line)
        if match:
            default = match.group(2).replace("|", "\\|")
            rows.append(f"| `{match.group(1)}` | {f'`{default}`' if default else '(empty)'} | {' '.join(comment)} |")
        comment = []  # a comment belongs to the variable right below it
    return "\n".join(rows)


def cli_help() -> str:
    template = yaml.safe_load((REPO / "conf" / "hydra" / "help" / "cl_run.yaml").read_text())["template"]
    return "```text\n" + template.replace("$$", "$") + "\n```"


def _bench_files(pattern: str) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted((REPO / "bench").glob(pattern))]


def _ratio(baseline: float, ours: float) -> str:
    ratio = baseline / ours
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def _load(values) -> str:
    return " → ".join(f"{v:.1f}" for v in values) if values else "not recorded"


def bench_training() -> str:
    out = []
    for name, d in _bench_files("results-*.json"):
        out += [f"**`bench/{name}`**: {d.get('device', '?')} ({d.get('device_kind', '?')}, {d.get('cpu_count', '?')} cores), "
                f"torch {d.get('torch', '?')}, Python {d.get('python', '?')}, {d.get('threads') or 'default'} thread(s); "
                f"{d['epochs']} epochs, median of {d['repeats']} repeats after {d.get('warmup', 0)} warm-up; "
                f"load average (1 min) before → after: {_load(d.get('load_average_1min_before_after'))}"
                + (f"; measured {d['date']}" if d.get("date") else "") + ".", "",
                "| measurement | notebook-style / loop | cl-runner | speed-up |", "|---|---:|---:|---:|"]
        for model, t in d["training"].items():
            base, ours = t["seconds_per_epoch"]["baseline"], t["seconds_per_epoch"]["ours"]
            out.append(f"| epoch, {model} (s) | {base:.4f} | {ours:.4f} | {_ratio(base, ours)} |")
        f = d["fisher"]
        out.append(f"| Fisher, {f['model']}, {f['samples']:,} ex. (s) | {f['seconds']['baseline']:.4f} | "
                   f"{f['seconds']['ours']:.4f} | {_ratio(f['seconds']['baseline'], f['seconds']['ours'])} |")
        for model, m in d.get("model_fishers", {}).items():
            for way, label in (("closed", "closed form"), ("vmap", "vmap")):
                loop, ours = m["seconds"]["loop"], m["seconds"][way]
                out.append(f"| Fisher, {model}, {m['samples']} ex., {label} (s) | {loop:.4f} | {ours:.4f} | {_ratio(loop, ours)} |")
        out += ["", f"Largest relative difference between the two {f['model']} Fishers: {f['max_relative_difference']:.1e}"
                + "".join(f"; {model}, closed form and vmap against the loop in float64: "
                          f"{max(m['max_relative_difference'].values()):.1e}" for model, m in d.get("model_fishers", {}).items())
                + ".", ""]
    return "\n".join(out) or "No `bench/results-*.json` yet: `make bench` writes one."


def bench_startup() -> str:
    out = []
    for name, d in _bench_files("startup-*.json"):
        out += [f"**`bench/{name}`**: {d.get('device', '?')}, {d.get('cpu_count', '?')} cores, Python {d.get('python', '?')}; "
                f"median of {d['repeats']} runs each; load average (1 min) before → after: "
                f"{_load([d.get('load_average_before', [None])[0], d.get('load_average_after', [None])[0]])}"
                + (f"; measured {d['date']}" if d.get("date") else "") + ".", "",
                "| seconds | " + " | ".join(PHASES) + " | ratio |", "|---|" + "---:|" * (len(PHASES) + 1)]
        for case in d["cases"]:
            for side in ("cl-run", "plain"):
                m = case["medians"][side]
                cells = " | ".join("—" if side == "plain" and p == "config" else f"{m[p]:.2f}" for p in PHASES)
                ratio = f"**{case['ratio']:.2f}x** (target {case['target']:.2f}x)" if side == "cl-run" else ""
                label = f"{case['case']}: cl-run" if side == "cl-run" else "plain PyTorch"
                out.append(f"| {label} | {cells} | {ratio} |")
        sweeps = d.get("sweeps_6_runs")
        if sweeps:
            out += ["", "A 6-run sweep of the EWC case (seeds 0-5), wall seconds: "
                    + ", ".join(f"{launcher} {s['median_s']:.1f} s" for launcher, s in sweeps.items()) + "."]
        out.append("")
    return "\n".join(out) or "No `bench/startup-*.json` yet: `make bench` writes one."


def bench_load() -> str:
    out = []
    for name, d in _bench_files("load-*.json"):
        out += [f"**`bench/{name}`**: {d.get('cpu', '?')}, {d.get('cpu_count', '?')} cores, Python {d.get('python', '?')}; "
                f"median of {d['repeats']} idle/loaded pairs; load average (1 min) before → after: "
                f"{_load([d['load_average_before'][0], d['load_average_after'][0]])}"
                + (f"; measured {d['date']}" if d.get("date") else "") + ".", "",
                "| model | setting | threads | idle epoch (s) | beside a busy process (s) | ratio (range) | target |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for setting, rows in d["epochs"].items():
            label = "cl-run (`train.threads=auto`)" if setting == "auto" else "plain PyTorch's settings"
            for model, r in rows.items():
                low, high = r["ratio_range"]
                target = f"≤ {d['target']:g}x" if setting == "auto" else ""
                out.append(f"| {model} | {label} | {r['threads']} | {r['idle_s']:.3f} | {r['loaded_s']:.3f} | "
                           f"**{r['ratio']:.2f}x** ({low:.2f}-{high:.2f}) | {target} |")
        sweep = d.get("sweep")
        if sweep:
            out += ["", f"The sweep `{sweep['command']}`: wall {sweep['idle']['wall_s']:.1f} s idle, "
                        f"{sweep['loaded']['wall_s']:.1f} s beside the busy process ({sweep['wall_ratio']:.2f}x); its "
                        f"training epochs {sweep['idle']['training_s']:.2f} s and {sweep['loaded']['training_s']:.2f} s "
                        f"({sweep['training_ratio']:.2f}x)."]
        out.append("")
    return "\n".join(out) or "No `bench/load-*.json` yet: `make bench-load` writes one."


FASHION_CSV = REPO / "docs" / "results" / "split-fashion-mnist.csv"
FASHION_TASKS = ["T-shirt/trouser", "pullover/dress", "coat/sandal", "shirt/sneaker", "bag/ankle boot"]


def _cell(value: str) -> str:
    """Three decimals ("—" where the run has no such number: joint's one stage has no forgetting)."""
    if not value:
        return "—"
    number = float(value)
    return f"{0.0 if abs(number) < 5e-4 else number:.3f}"  # never "-0.000"


def fashion_results() -> str:
    """One table per scenario of docs/results/split-fashion-mnist.csv (cl-report's runs.csv of the
    sweep, less its paths): each strategy's final test accuracy per task, mean, forgetting, BWT."""
    rows = list(csv.DictReader(FASHION_CSV.open()))
    out = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        out += [f"**`scenario={scenario}`**", "",
                "| strategy | " + " | ".join(f"task {j} ({name})" for j, name in enumerate(FASHION_TASKS))
                + " | mean | forgetting | BWT | training s |", "|---|" + "---:|" * (len(FASHION_TASKS) + 4)]
        for r in (r for r in rows if r["scenario"] == scenario):
            accs = " | ".join(_cell(r[f"final_acc_task{j}"]) for j in range(len(FASHION_TASKS)))
            strategy = f"{r['strategy']}, `{r['overrides']}`" if r["overrides"] else r["strategy"]
            out.append(f"| {strategy} | {accs} | **{_cell(r['average_accuracy'])}** | {_cell(r['forgetting'])} | "
                       f"{_cell(r['backward_transfer'])} | {float(r['seconds']):.1f} |")
        out.append("")
    return "\n".join(out)


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    return re.split(r"(?<=[.:])\s+(?=[A-Z`(])", first)[0].rstrip(":") if first else ""


def code_layout() -> str:
    """Every module of cl_runner with the first sentence of its docstring, packages first line."""
    package = REPO / "cl_runner"
    rows = ["| module | what it is for |", "|---|---|"]
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(REPO)
        if path.name == "__main__.py":
            continue
        name = str(relative.parent) + "/" if path.name == "__init__.py" else str(relative)
        rows.append(f"| `{name}` | {_summary(path).replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


GENERATORS = {"exit-codes": exit_codes, "make-targets": make_targets, "make-variables": make_variables,
              "cli-help": cli_help, "code-layout": code_layout, "bench-training": bench_training, "bench-startup": bench_startup,
              "bench-load": bench_load, "fashion-results": fashion_results}
