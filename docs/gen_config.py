"""The config reference (docs/reference/config.md), written from the schema and conf/.

Every key comes from the typed schema (`cl_runner.config.schema()`: one dataclass per node,
each model's and each tracker's own), with its type (a closed choice lists its values), its
default as `cl-run` with no overrides composes it (else the dataclass's), and its meaning: the
note in docs/reference/config-notes.yaml where there is one, else the comment beside or above
the field in its dataclass, else the comment in the YAML file that sets it. The groups' options
come from gen_groups.py (conf/<group>/, with each file's first comment line). A key or option added
to the code appears here at the next build; a note for a key that no longer exists is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import tokenize
import typing
from enum import Enum
from pathlib import Path

import yaml

from cl_runner import config
from cl_runner.models import MODELS
from cl_runner.strategies import PLUGINS
from cl_runner.trackers import TRACKERS

import gen_groups  # beside this file (gen_pages.py puts docs/ on sys.path)
from gen_groups import default_config, fmt_cell, fmt_value, options_table, presets_table, strategy_parts, yaml_comments

CONF = config.CONF_DIR
NOTES = Path(__file__).resolve().parent / "reference" / "config-notes.yaml"


@functools.cache
def notes() -> dict:
    return yaml.safe_load(NOTES.read_text()) or {}


def type_name(kind) -> str:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return " \\| ".join(f"`{m.value}`" for m in kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or str(origin) == "types.UnionType":
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in inner) + (", or null" if len(inner) < len(args) else "")
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if kind is typing.Any:
        return "any"
    return getattr(kind, "__name__", str(kind))


def _comments(lines: list[str]) -> tuple[dict[int, str], set[int]]:
    """(comment text by line number, the line numbers holding code) of some source lines."""
    comments, code = {}, set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                code.update(range(tok.start[0], tok.end[0] + 1))
    except (tokenize.TokenError, IndentationError):
        pass
    return comments, code


def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in its dataclass's source: the one on its line, else the comment
    lines just above it. Inherited fields take their defining class's."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):  # made by make_dataclass: no source
            continue
        comments, code = _comments(lines)
        names = {f.name for f in dataclasses.fields(klass)}
        for row, line in enumerate(lines, 1):
            match = re.match(r"^\s+(\w+)\s*:", line)
            if not match or match.group(1) not in names:
                continue
            text = comments.get(row) if row in code else None
            if text is None:
                above, up = [], row - 1
                while up in comments and up not in code:
                    above.insert(0, comments[up])
                    up -= 1
                text = " ".join(above) or None
            if text:
                found[match.group(1)] = text
    return found


def _default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def node_table(cls: type, prefix: str, composed: dict | None, note_key: str, yaml_notes: dict | None = None) -> str:
    """One row per key of a node: key, default, type, meaning."""
    hints = typing.get_type_hints(cls)
    comments, extra = field_comments(cls), notes().get(note_key, {}) or {}
    rows = ["| key | default | type | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(cls):
        kind = hints.get(field.name, field.type)
        if dataclasses.is_dataclass(kind):
            continue  # a nested node has its own table
        default = composed[field.name] if composed and field.name in composed else _default_of(field)
        meaning = extra.get(field.name) or comments.get(field.name) or (yaml_notes or {}).get(field.name) or ""
        rows.append(f"| `{prefix}{field.name}` | {fmt_value(default)} | {type_name(kind)} | {fmt_cell(meaning)} |")
    return "\n".join(rows) if len(rows) > 2 else "No keys of its own."


def config_reference() -> str:
    composed = default_config()
    top = yaml_comments(CONF / "config.yaml")
    schema = config.schema()
    out = ["## Config groups", "", "`group=option` selects `conf/<group>/<option>.yaml`.", "", gen_groups.groups_table(), ""]
    nodes = [f for f in dataclasses.fields(schema) if isinstance(f.type, type) and issubclass(f.type, config.Node)]
    scalars = [f for f in dataclasses.fields(schema) if f not in nodes]
    out += ["## Top-level keys", "", _scalars_table(scalars, composed, top), ""]
    for field in nodes:
        out += _node_section(field.name, field.type, composed)
    return "\n".join(out)


def _scalars_table(fields: list, composed: dict, comments: dict) -> str:
    extra = notes().get("top", {}) or {}
    rows = ["| key | default | type | meaning |", "|---|---|---|---|"]
    for field in fields:
        meaning = extra.get(field.name) or comments.get(field.name, "")
        rows.append(f"| `{field.name}` | {fmt_value(composed.get(field.name))} | {type_name(field.type)} | {fmt_cell(meaning)} |")
    return "\n".join(rows)


def _node_section(name: str, cls: type, composed: dict) -> list[str]:
    intro = notes().get("sections", {}).get(name, "")
    out = [f"## `{name}`", ""] + ([intro, ""] if intro else [])
    if name == "model":
        out += ["Options (`model=`):", "", options_table("model"), ""]
        for entry in MODELS.entries.values():
            own = composed["model"] if composed["model"].get("name") == entry.name else None
            yaml_file = CONF / "model" / f"{entry.name}.yaml"
            out += [f"### `model={entry.name}`", "",
                    node_table(entry.config, "model.", own, f"model/{entry.name}",
                               yaml_comments(yaml_file) if yaml_file.is_file() else None), ""]
        return out
    if name == "logger":
        for tracker in TRACKERS:
            out += [f"### `logger.{tracker}`", "", f"Chosen with `logger={tracker}` (or in a list, `logger=[...]`).", "",
                    node_table(TRACKERS[tracker].config, f"logger.{tracker}.", composed["logger"][tracker],
                               f"logger.{tracker}"), ""]
        return out
    if name == "dataset":
        out += ["Presets (`dataset=`), each setting the keys below:", "", presets_table(), ""]
    if name == "strategy":
        out += ["Strategies (`strategy=`): the plugins each is made of; each plugin's keys are under its own "
                "node below.", "", options_table("strategy", strategy_parts, "plugins"), ""]
    if name in PLUGINS:
        out += [f"Used by the strategies whose `strategy.plugins` list `{name}`.", ""]
    default_yaml = CONF / name / f"{composed.get(name, {}).get('name', '')}.yaml"
    out += [node_table(cls, f"{name}.", composed.get(name), name,
                       yaml_comments(default_yaml) if default_yaml.is_file() else None), ""]
    return out


def stale_notes() -> list[str]:
    """Notes in config-notes.yaml for keys the schema no longer has."""
    schema = config.schema()
    sections = {f.name: f.type for f in dataclasses.fields(schema) if dataclasses.is_dataclass(f.type)}
    sections.update({f"model/{e.name}": e.config for e in MODELS.entries.values()})
    sections.update({f"logger.{t}": TRACKERS[t].config for t in TRACKERS})
    top = {f.name for f in dataclasses.fields(schema)}
    stale = []
    for section, keys in notes().items():
        if section == "sections":
            stale += [f"sections.{k}" for k in keys if k not in sections]
            continue
        names = top if section == "top" else ({f.name for f in dataclasses.fields(sections[section])}
                                              if section in sections else None)
        if names is None:
            stale.append(section)
            continue
        stale += [f"{section}.{k}" for k in keys if k not in names]
    return stale


GENERATORS = {"config-reference": config_reference}
