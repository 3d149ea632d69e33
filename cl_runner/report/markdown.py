"""report.md: the report's blocks (see `content`) as GitHub-flavoured Markdown."""

from __future__ import annotations

from .content import Figures, Heading, Items, Paragraph, Table


def render(blocks: list) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            lines.append(block.text)
        elif isinstance(block, Table):
            lines += _table(block)
        elif isinstance(block, Items):
            lines += [f"- {item}" for item in block.items]
        elif isinstance(block, Figures):
            lines += [f"![{name}]({name})" for name in block.names]
        lines.append("")
    return "\n".join(lines)


def _table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    for row in table.rows:
        cells = [_escape(c) for c in row]
        cells = [f"`{c}`" if i in table.code_columns else c for i, c in enumerate(cells)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _escape(text: str) -> str:
    # A | would end the cell, a newline the row.
    return text.replace("|", "\\|").replace("\n", " ")
