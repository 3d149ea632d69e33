"""The docs' tables of conf/: each config group's options with the first comment line of their
YAML files, the dataset presets as composed, the experiment presets, and the fields of the
launcher presets (hydra/launcher). Shared with gen_config.py: the default composition and the
comments of YAML files. See gen_pages.py for how generated parts are marked.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from enum import Enum
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cl_runner import config

CONF = config.CONF_DIR
GROUPS = ["dataset", "model", "strategy", "optimizer", "logger", "experiment", "hydra/launcher"]


@functools.cache
def default_config() -> dict:
    """What `cl-run` with no overrides composes, unresolved (so `${oc.env:...}` shows as written)."""
    config.register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("config"), resolve=False)


@functools.cache
def composed_with(override: str) -> dict:
    config.register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=[override]), resolve=False)


def yaml_comments(path: Path) -> dict[str, str]:
    """`dotted.key: comment` for every `key: value  # comment` line of a YAML file."""
    found, stack = {}, []
    for line in path.read_text().splitlines():
        match = re.match(r"^(\s*)([\w.-]+):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if " #" in rest:
            found[".".join(k for _, k in stack)] = rest.split(" #", 1)[1].strip()
    return found


def header(path: Path) -> str:
    """The first comment paragraph of a YAML file (after `# @package ...`), as one line."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    text = " ".join(lines)
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0] if text else ""


def fmt_value(value) -> str:
    if isinstance(value, Enum):
        value = value.value
    if dataclasses.is_dataclass(value):
        return "—"
    if isinstance(value, float) and value and not 1e-3 < abs(value) < 1e5:
        return "`" + f"{value:g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e") + "`"
    shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"`{shown.removesuffix(chr(10) + '...').strip()}`"


def fmt_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def option_files(group: str) -> list[Path]:
    return sorted((CONF / group).glob("*.yaml"))


def groups_table() -> str:
    rows = ["| group | default | options |", "|---|---|---|"]
    defaults = {next(iter(d)): d[next(iter(d))] for d in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
                if isinstance(d, dict)}
    for group in GROUPS:
        options = ", ".join(f"`{p.stem}`" for p in option_files(group))
        if group == "hydra/launcher":
            options = "`basic`, `joblib`, `submitit_local` (Hydra's plugins), " + options
        default = defaults.get(group, "basic")
        rows.append(f"| `{group}` | {f'`{default}`' if default else 'none'} | {options} |")
    return "\n".join(rows)


def options_table(group: str, extra: typing.Callable[[dict], str] | None = None, extra_title: str = "") -> str:
    head = "| option | what |" + (f" {extra_title} |" if extra else "")
    rows = [head, "|---|---|" + ("---|" if extra else "")]
    for path in option_files(group):
        cells = f"| `{path.stem}` | {fmt_cell(header(path))} |"
        if extra:
            cells += f" {extra(yaml.safe_load(path.read_text()) or {})} |"
        rows.append(cells)
    return "\n".join(rows)


def presets_table() -> str:
    rows = ["| preset | what | source | kind | tasks |", "|---|---|---|---|---|"]
    for path in option_files("dataset"):
        d = composed_with(f"dataset={path.stem}")["dataset"]
        tasks = d["tasks"] if d.get("tasks") is not None else d.get("num_tasks")
        rows.append(f"| `{path.stem}` | {fmt_cell(header(path))} | `{d['source']}` | `{d['kind']}` | {fmt_value(tasks)} |")
    return "\n".join(rows)


def strategy_parts(values: dict) -> str:
    node = values.get("strategy", values)
    plugins = node.get("plugins", [])
    return (", ".join(f"[`{p}`](#{p})" for p in plugins) or "none") + (
        f"; schedule `{node['schedule']}`" if node.get("schedule") else "")


def experiments() -> str:
    return options_table("experiment")


def launchers() -> str:
    out = []
    for path in option_files("hydra/launcher"):
        comments = yaml_comments(path)
        values = yaml.safe_load(path.read_text())
        rows = ["| key | default | meaning |", "|---|---|---|"]
        for key, value in _flat(values):
            if key != "defaults":
                rows.append(f"| `hydra.launcher.{key}` | {fmt_value(value)} | {fmt_cell(comments.get(key, ''))} |")
        out += [f"### `hydra/launcher={path.stem}`", "", header(path), "", "\n".join(rows), ""]
    return "\n".join(out)


def _flat(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


GENERATORS = {"experiments": experiments, "launchers": launchers}
