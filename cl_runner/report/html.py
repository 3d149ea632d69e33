"""report.html: the report's blocks (see `content`) as one self-contained HTML page.

Figures are embedded as base64 PNG data URIs and the style sheet is inline, so the file
can be opened anywhere or sent on its own: it refers to nothing outside itself.
"""

from __future__ import annotations

import base64
import re
from html import escape  # the standard library's html: imports are absolute, this module is not meant
from pathlib import Path

from .content import Figures, Heading, Items, Paragraph, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; background: #f3f3f3;
       padding: 0 0.25em; border-radius: 3px; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; }
th { background: #eef2f7; text-align: left; }
td { font-variant-numeric: tabular-nums; }
table.numbers td { white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.85em; }
"""


def render(blocks: list, folder: Path) -> str:
    """The page; figures are read from folder (where the PNGs were written)."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "cl-report")
    body = "\n".join(_block(block, folder) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _block(block, folder: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Items):
        return "<ul>\n" + "\n".join(f"<li>{_inline(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Figures):
        return "\n".join(_figure(folder / name) for name in block.names)
    raise TypeError(f"no HTML for {type(block).__name__}")


def _inline(text: str) -> str:
    # `code` spans, as in the Markdown report.
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))


def _table(table: Table) -> str:
    # A table of numbers keeps "0.715 ± 0.134" on one line; one of messages wraps.
    kind = ' class="numbers"' if table.numbers else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        cells = [f"<code>{escape(c)}</code>" if i in table.code_columns else escape(c) for i, c in enumerate(row)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<div class="scroll"><table{kind}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody>\n</table></div>")


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(path.name)}">'
            f"<figcaption>{escape(path.name)}</figcaption></figure>")
