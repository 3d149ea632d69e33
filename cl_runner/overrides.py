"""A cl-run command line as Hydra reads it: its overrides, their syntax, their sweeps.

`split_argv` separates the overrides from Hydra's flags; `parse` reads them one by one, so a
value Hydra's grammar refuses (a space, a letter outside ASCII, a word without `=`) is named
with the quoting that makes it work instead of a lexer error; `variants` expands the sweeps;
`check_groups` refuses a config group given anything but one option name (`strategy=nan`,
`model=[1]`) before Hydra fails on it with a traceback. `quoted` writes a value back as an
override Hydra reads as exactly that value (cl-run passes the output folder it chose so).
"""

from __future__ import annotations

import re

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import OmegaConf

from .errors import ConfigError

# Flags of Hydra's own command line that take a value (so that value is not an override).
FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                    "--cfg", "-c", "--package", "-p", "--experimental-rerun"}
MAX_KEY = 200  # longer than any key of the schema by far; a longer one is garbage


def split_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(config name, overrides) of a cl-run command line."""
    config_name, overrides, skip = "config", [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in FLAGS_WITH_VALUE:
            skip = True
            if arg in ("--config-name", "-cn") and i + 1 < len(argv):
                config_name = argv[i + 1]
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            overrides.append(arg)
    return config_name, overrides


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def parse(overrides: list[str]) -> list[Override]:
    """The parsed overrides; ConfigError naming the first one Hydra cannot read, and how to fix it."""
    parser, parsed = OverridesParser.create(), []
    for i, text in enumerate(overrides):
        key = text.partition("=")[0].lstrip("+~")
        if len(key) > MAX_KEY:
            raise ConfigError("command line", _short(text), f"no config key is {len(key)} characters long")
        try:
            parsed.append(parser.parse_override(text))
        except HydraException as err:
            raise ConfigError("command line", _short(text), _parse_hint(text, overrides[i - 1] if i else "", err)) from None
    return parsed


def _parse_hint(text: str, previous: str, err: HydraException) -> str:
    key, equals, value = text.partition("=")
    if not equals and not text.startswith("~"):
        if "=" in previous:  # `data.root=my data` unquoted in the shell arrives as two words
            joined = f"{previous.partition('=')[0]}='{previous.partition('=')[2]} {text}'"
            return f"not key=value; a value with spaces must be quoted, e.g. \"{joined}\""
        return "not key=value"
    if any(c in value for c in "\n\r"):
        return "a value cannot hold a line break"
    if value and not (value[0] in "'\"[{" or "${" in value):
        return (f"Hydra reads this value only in quotes (it has spaces, letters outside ASCII or signs it "
                f"gives a meaning): write \"{key}='{value}'\"")
    return " ".join(str(err).split())


def variants(overrides: list[str]) -> list[list[str]]:
    """Override lists to compose: every sweep at its first value, then each other value once.
    Sweeps that cannot be listed (an optuna interval) are left to the sweeper."""
    choices = []
    for text, ov in zip(overrides, parse(overrides)):
        if not ov.is_sweep_override():
            choices.append([text])
            continue
        try:
            values = list(ov.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - interval/tag sweeps have no finite list of values
            continue
        prefix = text.split("=", 1)[0]
        choices.append([f"{prefix}={v}" for v in values])
    base = [c[0] for c in choices]
    expanded = [base]
    for i, c in enumerate(choices):
        for value in c[1:]:
            expanded.append(base[:i] + [value] + base[i + 1 :])
    return expanded


# Groups whose options combine (`logger=[tensorboard,mlflow]`); every other group takes one.
MULTI_SELECT = {"logger"}


def _option_name(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[\w.\-/]+", value) is not None


def check_groups(overrides: list[str], options_of) -> None:
    """A config group takes one option name (a list of names for MULTI_SELECT groups): refuse a
    number, NaN, a list or null there. `options_of(group)` lists a group's options (empty for a
    key that is not a group)."""
    for text, ov in zip(overrides, parse(overrides)):
        if ov.is_delete() or ov.is_sweep_override():
            continue
        options = options_of(ov.key_or_group)
        value = ov.value()
        if ov.key_or_group in MULTI_SELECT and isinstance(value, list) and all(_option_name(v) for v in value):
            continue
        if options and not _option_name(value):
            hint = "; to combine strategies list their plugins: strategy.plugins=[ewc,replay]" \
                if ov.key_or_group == "strategy" and isinstance(value, list) else ""
            raise ConfigError(ov.key_or_group, _short(text.partition("=")[2]), f"one of {', '.join(options)}{hint}")


def quoted(key: str, value: str) -> str:
    """`key='value'`, escaped so that Hydra reads back exactly `value`; ValueError if it cannot."""
    # Backslashes escape only before a quote, the closing quote or `${`: double those runs.
    escaped = re.sub(r"\\+(?='|\$\{|$)", lambda m: m.group(0) * 2, value)
    text = f"{key}='" + escaped.replace("'", "\\'").replace("${", "\\${") + "'"
    try:
        read = OverridesParser.create().parse_override(text).value()
        back = OmegaConf.create({"v": read}).v
    except Exception as err:  # noqa: BLE001 - any failure means Hydra would not read it back
        raise ValueError(value) from err
    if back != value:
        raise ValueError(value)
    return text
