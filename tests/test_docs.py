"""The documentation cannot rot: the site builds with `mkdocs build --strict`, its generated parts
are current, the README stays short and its links lead somewhere, and every `cl-run` command line
shown in the docs and the README passes the config check (`cl_runner.precheck`: composed and
validated, each value of a sweep too, nothing trained) -- or, where the page marks it with
`<!-- cl-run: fails on KEY -->` just before it, is refused with a message naming KEY."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cl_runner import precheck
from cl_runner.errors import UserError

from .conftest import REPO

DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS))
import gen_config  # noqa: E402
import gen_pages  # noqa: E402

MARKER = re.compile(r"^<!-- cl-run: fails(?: on (\S+))? -->$")
COMMAND = re.compile(r"^(?:\$ )?(cl-run(?:\s.*)?)$")
INLINE = re.compile(r"`(cl-run(?:\s[^`]*)?)`")
EXTRA_MISSING = re.compile(r"needs the '(\w+)' extra, not installed here")


@dataclass(frozen=True)
class Shown:
    """A cl-run command line as a page shows it, and what the page says it does."""

    page: str
    line: int
    text: str
    fails_on: str | None = None  # the key its error must name; None: it must pass
    fails: bool = False

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _blocks(text: str):
    """(first line number, lines, is a fenced code block) of each block of a Markdown page:
    a fenced block whole, else the lines between blank lines."""
    block, start, fence = [], 1, None
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None and line.lstrip().startswith("```"):
            if block:
                yield start, block, False
            block, start, fence = [], number + 1, line.lstrip()[3:].strip() or "text"
        elif fence is not None and line.lstrip().startswith("```"):
            yield start, block, fence
            block, fence = [], None
        elif fence is None and not line.strip():
            if block:
                yield start, block, False
            block = []
        else:
            if not block:
                start = number
            block.append(line)
    if block:
        yield start, block, fence or False


def _code_commands(lines: list[str]) -> list[tuple[int, str]]:
    """The cl-run lines of some code, backslash continuations joined."""
    found, joined, first = [], "", 0
    for offset, line in enumerate(lines):
        if not joined:
            first = offset
        joined += line.strip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        match = COMMAND.match(joined)
        if match:
            found.append((first, match.group(1)))
        joined = ""
    return found


def shown_commands(page: Path) -> list[Shown]:
    name, found, expect = str(page.relative_to(REPO) if page.is_relative_to(REPO) else page), [], None
    for start, lines, fence in _blocks(page.read_text()):
        marker = MARKER.match(lines[0].strip()) if len(lines) == 1 and not fence else None
        if marker:
            expect = marker
            continue
        if fence and fence.split()[0] in ("bash", "sh", "shell", "console"):  # `text`: synopses, output
            commands = _code_commands(lines)
        elif fence:
            commands = []
        else:
            indented = [line for line in lines if line.startswith("    ")]
            commands = _code_commands(indented) if len(indented) == len(lines) else []
            commands += [(i, m) for i, line in enumerate(lines) for m in INLINE.findall(line) if not line.startswith("    ")]
        for offset, text in commands:
            found.append(Shown(name, start + offset, text, expect.group(1) if expect else None, expect is not None))
        expect = None
    return found


def all_shown() -> list[Shown]:
    return [c for page in gen_pages.pages() if page.is_file() for c in shown_commands(page)]


def _argv(text: str) -> list[str]:
    return shlex.split(text, comments=True)[1:]


def _extra_installed(extra: str) -> bool:
    """Whether every package of one of cl-runner's extras is installed."""
    needs = [r for r in metadata.requires("cl-runner") or [] if re.search(rf"extra == ['\"]{extra}['\"]", r)]
    try:
        return bool(needs) and all(metadata.version(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in needs)
    except metadata.PackageNotFoundError:
        return False


def checked(command: Shown) -> str | None:
    """What is wrong with a shown command line, or None."""
    try:
        argv = _argv(command.text)
    except ValueError as err:  # shlex: an unclosed quote
        return f"not a shell command line: {err}"
    if "--version" in argv:  # cl-run answers it before reading the rest (cli._launch): nothing to check
        return None
    try:
        precheck.check(argv)
    except UserError as err:
        missing = EXTRA_MISSING.search(str(err))
        if missing and not command.fails:
            # Composed as far as an uninstalled optional plugin allows: right only if it is not installed.
            return f"says the {missing.group(1)!r} extra is missing, but it is installed: {err}" \
                if _extra_installed(missing.group(1)) else None
        if not command.fails:
            return f"refused: {err}"
        if command.fails_on and command.fails_on not in str(err):
            return f"refused, but not for {command.fails_on}: {err}"
        return None
    return "passed the config check, but the page says it fails" if command.fails else None


@pytest.mark.slow
def test_every_cl_run_command_line_in_the_docs_passes_the_config_check():
    shown = all_shown()
    assert len(shown) > 50, f"only {len(shown)} cl-run command lines found: is the extraction broken?"
    verdicts: dict[tuple, str | None] = {}  # a command line shown on several pages is checked once
    problems = []
    for command in shown:
        key = (" ".join(command.text.split()), command.fails, command.fails_on)
        if key not in verdicts:
            verdicts[key] = checked(command)
        if verdicts[key] is not None:
            problems.append(f"{command}: {verdicts[key]}")
    assert not problems, "\n".join(problems)


def test_the_extraction_finds_commands_and_a_stale_key_fails(tmp_path):
    page = tmp_path / "page.md"
    page_text = "\n".join([
        "Run `cl-run strategy=ewc` or see `cl-run: naive done` (a line it prints, not a command).", "",
        "```bash", "cl-run -m strategy=replay \\", "  replay.share=0.1,0.5   # a sweep", "python -m other", "```", "",
        "<!-- cl-run: fails on model.widht -->", "```bash", "cl-run model.widht=3", "```", "",
        "    cl-run dataset.name_typo=1", ""])
    page.write_text(page_text)
    shown = shown_commands(page)
    assert [(c.line, " ".join(c.text.split()), c.fails_on) for c in shown] == [
        (1, "cl-run strategy=ewc", None), (4, "cl-run -m strategy=replay replay.share=0.1,0.5 # a sweep", None),
        (11, "cl-run model.widht=3", "model.widht"), (14, "cl-run dataset.name_typo=1", None)]
    assert [checked(c) is None for c in shown] == [True, True, True, False]
    assert "unknown key 'dataset.name_typo'" in checked(shown[3])
    wrong_reason = Shown("p", 1, "cl-run model.widht=3", fails_on="seed", fails=True)
    assert "not for seed" in checked(wrong_reason)
    assert "says it fails" in checked(Shown("p", 1, "cl-run seed=1", fails=True))


def test_generated_parts_are_current():
    stale = gen_pages.update(check=True)
    assert not stale, f"generated parts out of date in {', '.join(stale)}: run `make docs` (python docs/gen_pages.py)"


def test_config_notes_name_only_existing_keys():
    assert gen_config.stale_notes() == []


def test_every_config_key_is_in_the_reference():
    text = (DOCS / "reference" / "config.md").read_text()
    composed = gen_config.default_config()
    keys = [f"{node}.{key}" for node, values in composed.items() if isinstance(values, dict) and node != "logger"
            for key in values] + [k for k, v in composed.items() if not isinstance(v, dict)]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing and len(keys) > 60, missing


def test_readme_is_short_and_its_links_lead_somewhere():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 20
    assert [link for link in links if not (REPO / link).exists()] == []


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    try:
        metadata.version("mkdocs-material")
    except metadata.PackageNotFoundError:
        pytest.fail("mkdocs-material is not installed: pip install -e '.[docs]' (make test installs it)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    built = tmp_path / "site"
    assert (built / "reference" / "config" / "index.html").is_file() and (built / "assets" / "curves.png").is_file()
    assert "ewc.alpha" in (built / "reference" / "config" / "index.html").read_text()


def test_every_make_target_named_in_the_docs_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    targets |= {f"exp-{e}" for e in re.search(r"^EXPERIMENTS = (.*)$", makefile, re.M).group(1).split()} | {"exp-NAME"}
    named = {(str(page.relative_to(REPO)), target) for page in gen_pages.pages()
             for target in re.findall(r"`make ([a-z][\w-]*)", page.read_text())}
    named |= {(str(page.relative_to(REPO)), target) for page in gen_pages.pages()
              for target in re.findall(r"^make ([a-z][\w-]*)", page.read_text(), re.M)}
    assert len(named) > 20
    named = {(page, t) for page, t in named if not t.endswith("-")}  # `make sweep-*`: a pattern
    assert sorted((page, t) for page, t in named if t not in targets) == []
