"""The documentation's generated parts, rewritten from their sources so that they cannot go stale.

A page (any .md file under docs/, or README.md) holds a generated part between two markers:

    <!-- generated: NAME -->
    ...  (written by the generator NAME; edits here are overwritten)
    <!-- end: NAME -->

and `python docs/gen_pages.py` rewrites every such part from its source: the config schema
and conf/ (gen_config.py), cl_runner/errors.py, the Makefile's `## ` lines, the bench JSON
files, cl-run's --help page (gen_tables.py). A new config key, exit code, make target or
measurement therefore appears in the docs with no hand copy. `--check` writes nothing and exits
1 naming the pages that differ (tests/test_docs.py checks the same). MkDocs renders the parts
afresh as it builds each page (docs/hooks.py), so the site is current even before `make docs`
(which runs this first) has rewritten the copy in the repository.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS))  # the generators beside this file, however it is started

import gen_config  # noqa: E402
import gen_groups  # noqa: E402
import gen_tables  # noqa: E402

GENERATORS: dict[str, Callable[[], str]] = {
    **gen_config.GENERATORS,
    **gen_groups.GENERATORS,
    **gen_tables.GENERATORS,
}
PART = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "site" not in p.relative_to(DOCS).parts) + [REPO / "README.md"]


def rendered(text: str, page: Path) -> str:
    """`text` with each generated part rewritten; ValueError for a part no generator makes."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise ValueError(f"{page.relative_to(REPO)}: no generator called {name!r} (there are: {', '.join(GENERATORS)})")
        body = GENERATORS[name]().rstrip("\n") + "\n"
        return f"{match.group(1)}\n{body}\n{match.group(4)}"

    return PART.sub(fill, text)


def update(check: bool = False) -> list[str]:
    """Rewrite (or with `check`, only compare) every page's generated parts; the pages that
    differed, relative to the repository."""
    stale = []
    for page in pages():
        if not page.is_file():
            continue
        text = page.read_text()
        new = rendered(text, page)
        if new != text:
            stale.append(str(page.relative_to(REPO)))
            if not check:
                page.write_text(new)
    return stale


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = update(check)
    if check and stale:
        print(f"generated docs out of date: {', '.join(stale)}: run `make docs` (python docs/gen_pages.py)",
              file=sys.stderr)
        return 1
    for page in stale:
        print(f"gen_pages: rewrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
