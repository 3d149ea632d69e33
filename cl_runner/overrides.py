"""A cl-run command line as Hydra reads it: its overrides, their syntax, their sweeps.

`read_argv` reads the command line with hydra.main's own parser, so Hydra's flags may come
anywhere (`cl-run seed=0,1 -m`), and names the setting a flag Hydra lacks was meant to be
(`-epochs=2`: train.epochs=2); `parse` reads the overrides one by one, so a
value Hydra's grammar refuses (a space, a letter outside ASCII, a word without `=`) is named
with the quoting that makes it work instead of a lexer error; `variants` expands the sweeps;
`check_groups` refuses a config group given anything but one option name (`strategy=nan`,
`model=[1]`) before Hydra fails on it with a traceback. `quoted` writes a value back as an
override Hydra reads as exactly that value (cl-run passes the output folder it chose so).
"""

from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import dataclass

from hydra._internal.utils import get_args_parser  # hydra.main's own parser; the package is pinned < 1.4
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.errors import HydraException
from omegaconf import OmegaConf

from .errors import ConfigError

MAX_KEY = 200  # longer than any key of the schema by far; a longer one is garbage


@dataclass(frozen=True)
class CommandLine:
    """A cl-run command line as hydra.main reads it: Hydra's flags, read by Hydra's own parser
    in any order (`cl-run seed=0,1 -m` too), and the overrides, in the order given."""

    args: argparse.Namespace

    @property
    def overrides(self) -> list[str]:
        return list(self.args.overrides)

    @property
    def config_name(self) -> str:
        return self.args.config_name or "config"

    @property
    def prints(self) -> bool:
        """It prints something of Hydra's (help, a config, information) and runs nothing."""
        a = self.args
        return bool(a.help or a.hydra_help or a.cfg or a.info or a.shell_completion or a.experimental_rerun)


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = get_args_parser()

    def refuse(message: str):
        raise ConfigError("command line", " ".join(argv), f"{message} (see cl-run --hydra-help)")

    parser.error = refuse  # one line, not argparse's usage text and exit
    return parser


def read_argv(argv: list[str], keys=lambda: []) -> CommandLine:
    """The command line as Hydra reads it; ConfigError for a flag Hydra does not have, naming the
    setting it looks like (`-epochs=2`: train.epochs=2) among `keys()`, the config's keys."""
    args, unknown = _parser(argv).parse_known_intermixed_args(argv)
    if unknown:
        _refuse_flag(argv, unknown[0], keys)
    # What Hydra's _run_hydra refuses later with a traceback.
    if args.run + args.multirun + (args.cfg is not None) + args.shell_completion + (args.info is not None) > 1:
        raise ConfigError("command line", " ".join(argv), "give one of --run, --multirun, --cfg, --info and "
                                                          "--shell-completion")
    if args.resolve and not (args.cfg or args.help):
        raise ConfigError("--resolve", True, "goes with --cfg or --help (it resolves the config they print)")
    if args.shell_completion and not any(o.split("=", 1)[0] in ("install", "uninstall", "query") for o in args.overrides):
        raise ConfigError("--shell-completion", " ".join(args.overrides), "expects install=SHELL, uninstall=SHELL or "
                                                                          "query=..., e.g. cl-run -sc install=bash")
    return CommandLine(args)


def _refuse_flag(argv: list[str], flag: str, keys) -> None:
    name, equals, value = flag.lstrip("-").partition("=")
    at = argv.index(flag)
    if not equals and at + 1 < len(argv) and "=" not in argv[at + 1] and not argv[at + 1].startswith("-"):
        value, flag = argv[at + 1], f"{flag} {argv[at + 1]}"  # `--epochs 2`
    known = keys()
    matches = [k for k in known if k.rpartition(".")[2] == name] or difflib.get_close_matches(name, known, n=1)
    form = " or ".join(f"{key}={value or '...'}" for key in matches[:3])
    raise ConfigError("command line", flag, "not a flag of cl-run (its flags are Hydra's: -m, -cn, --cfg, ...); settings "
                                            f"are key=value, without dashes{f': {form}' if form else ''}")


def hydra_reads_as_given(argv: list[str], cmd: CommandLine) -> None:
    """ConfigError unless hydra.main, which reads sys.argv itself (`--cfg`, `--info`, ...), reads
    `argv` as `cmd`: its parser takes no override after a flag that follows an override."""
    if _parser(argv).parse_known_args(argv)[1]:
        flags = [a for a in argv if a not in cmd.overrides]
        raise ConfigError("command line", " ".join(argv), "give Hydra's flags before the overrides here: "
                                                          f"cl-run {' '.join(flags + cmd.overrides)}")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def parse(overrides: list[str], loader=None) -> list[Override]:
    """The parsed overrides; ConfigError naming the first one Hydra cannot read, and how to fix it.
    `loader`: Hydra's config loader, which a `glob()` of a group's options needs."""
    parser, parsed = OverridesParser.create(config_loader=loader), []
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


def variants(overrides: list[str], loader=None) -> list[list[str]]:
    """Override lists to compose: every sweep at its first value, then each other value once.
    An interval sweep (Optuna's) has no list of values: its two ends are composed."""
    choices = []
    for text, ov in zip(overrides, parse(overrides, loader)):
        if not ov.is_sweep_override():
            choices.append([text])
            continue
        sweep = ov.value()
        if isinstance(sweep, IntervalSweep):
            values = [str(sweep.start), str(sweep.end)]
        else:
            try:
                values = list(ov.sweep_string_iterator())
            except HydraException:  # a sweep of no values (`glob()` matching nothing): the sweeper says so
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
