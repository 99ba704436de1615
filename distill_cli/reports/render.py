"""Rendering a report page: its blocks (headings, paragraphs, tables, figures, code) to Markdown,
with the figures as PNG files beside it, and to self-contained HTML, with the same PNGs embedded
as data URIs. Text from a run's files is escaped (or fenced, in code blocks) so that it renders
as the same text.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

Block = tuple[Any, ...]  # ("h2", text) | ("p", text) | ("table", head, rows) | ("img", path, alt)
# | ("pre", text, lang)


def _md_text(text: str) -> str:
    """Text from a run's files (a recipe's description, a note) as Markdown that renders as
    the same text: no raw HTML a viewer would run or render."""
    return html.escape(str(text), quote=False)


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in `text`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def to_markdown(blocks: list[Block], folder: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            out.append(("#" if kind == "h1" else "##") + " " + _md_text(block[1]))
        elif kind == "p":
            out.append(_md_text(block[1]))
        elif kind == "table":
            head, rows = block[1], block[2]
            cells = [[_md_text(c).replace("|", "\\|") for c in row] for row in [head, *rows]]
            lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1].relative_to(folder).as_posix()})")
        elif kind == "pre":
            fence = _fence(block[1])
            out.append(f"{fence}{block[2]}\n{block[1].rstrip()}\n{fence}")
    return "\n\n".join(out) + "\n"


_CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;
padding:.25em .7em;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f8fa;padding:1em;overflow:auto}"""


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"]
    out.append(f"<style>{_CSS}</style></head><body>")
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(block[1].read_bytes()).decode()
            out.append(f"<p><img alt='{esc(block[2])}' src='data:image/png;base64,{data}'></p>")
        elif kind == "pre":
            out.append(f"<pre>{esc(block[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
