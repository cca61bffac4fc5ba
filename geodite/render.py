"""A report document as Markdown and as one self-contained HTML page.

The document (built by :func:`geodite.report.build_document`) is a list of blocks:
``("h", level, text, anchor)``, ``("p", text)``, ``("note", text)``,
``("table", headers, rows, classes-per-row or None)`` and ``("fig", path, caption)``. Text may use two bits
of Markdown, ``**bold**`` and ```code```. Figures are linked relatively (Markdown, HTML without ``embed``) or
embedded as base64 PNG (HTML).
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

import pandas as pd

from geodite.tasks.results import table_markdown

Block = tuple  # one of the shapes above


def render_markdown(doc: list[Block], out_dir: Path) -> str:
    """The document as Markdown; figures linked relative to ``out_dir`` (where the .md is written)."""
    lines: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            lines += [f"{'#' * block[1]} {block[2]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "note":
            lines += [f"> {block[1]}", ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append(table_markdown(pd.DataFrame(rows, columns=headers)))
        elif kind == "fig":
            rel = os.path.relpath(block[1], out_dir)
            lines += [f"![{block[2]}]({Path(rel).as_posix()})", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr.ours td{background:#eef6ee;font-weight:600}
tr.published td{background:#fafafa;color:#555;font-style:italic}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:0.5em 0.8em;margin:0.8em 0}
figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:560px;border:1px solid #ddd}
figcaption{font-size:0.8em;color:#555}
code{background:#f4f4f4;padding:0 3px}
td{overflow-wrap:break-word;max-width:520px}
"""


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the document uses: **bold** and `code`."""
    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def render_html(doc: list[Block], title: str, embed: bool = True, out_dir: Path | None = None) -> str:
    """The document as one HTML page (inline CSS; each level-1/2 heading opens a <section>); figures embedded
    as base64 with ``embed``, else linked relative to ``out_dir``."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    section_open = False
    for block in doc:
        kind = block[0]
        if kind == "h":
            if block[1] <= 2:
                if section_open:
                    parts.append("</section>")
                parts.append(f'<section id="{html.escape(block[3])}">')
                section_open = True
            parts.append(f'<h{block[1]} id="h-{html.escape(block[3])}">{_inline(block[2])}</h{block[1]}>')
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "note":
            parts.append(f'<p class="note">{_inline(block[1])}</p>')
        elif kind == "table":
            headers, rows, classes = block[1], block[2], block[3] or [None] * len(block[2])
            parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in headers) + "</tr></thead><tbody>")
            for row, cls in zip(rows, classes, strict=True):
                attr = f' class="{cls}"' if cls else ""
                parts.append(f"<tr{attr}>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            parts.append("</tbody></table>")
        elif kind == "fig":
            path: Path = block[1]
            if embed:
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            else:
                src = html.escape(Path(os.path.relpath(path, out_dir)).as_posix())
            parts.append(f'<figure><img src="{src}" alt="{html.escape(block[2])}" data-file="{html.escape(path.name)}">'
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    if section_open:
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
