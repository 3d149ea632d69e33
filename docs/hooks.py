"""MkDocs hook: each page's generated parts (docs/gen_pages.py) are rendered afresh as the page is
built, so the site always shows the current config keys, exit codes, make targets and
measurements, even where the copy in the repository is behind (`make docs` rewrites that copy
first; tests/test_docs.py fails while it is behind)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_pages  # noqa: E402


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    return gen_pages.rendered(markdown, Path(page.file.abs_src_path))
