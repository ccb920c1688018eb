"""The report's building blocks (headings, paragraphs, tables, figures, summary cards) and
their rendering as one self-contained HTML page (figures embedded, no scripts) and as
Markdown."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Heading",
    "Para",
    "Table",
    "Figure",
    "Cards",
    "Grid",
    "Gallery",
    "Block",
    "fmt",
    "fixed",
    "render_html",
    "render_md",
    "md_cell",
]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45;font-size:15px}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff;
 box-shadow:0 0 0 1px #e3e6eb}
h1{font-size:1.6em;margin:.2em 0 .1em}
h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:2px solid #e3e6eb}
h3{font-size:1.05em;margin:1.2em 0 .4em}
p{margin:.4em 0 .8em}
code{background:#eef1f5;padding:1px 5px;border-radius:3px;font-size:.92em}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0 6px}
.card{border:1px solid #dfe3ea;border-radius:6px;padding:8px 14px;min-width:110px;
 background:#fafbfc}
.card .v{font-size:1.45em;font-weight:600}
.card .k{font-size:.8em;color:#5b6476;text-transform:uppercase;letter-spacing:.03em}
.card .s{font-size:.8em;color:#38404f;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.grid>div{flex:1 1 300px;min-width:260px}
.scroll{overflow-x:auto;max-width:100%}
.grid table{width:100%;table-layout:fixed}
.grid th:first-child,.grid td:first-child{width:42%}
.grid td{overflow-wrap:anywhere}
.scroll td:first-child{position:sticky;left:0;background:#fff}
.scroll th:first-child{position:sticky;left:0;background:#f0f2f6}
.scroll tr.hl td:first-child{background:#fde8e8}
table{border-collapse:collapse;margin:.3em 0 1em;font-size:.88em}
th,td{border:1px solid #dfe3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.hl td{background:#fde8e8;font-weight:600}
caption{caption-side:top;text-align:left;font-weight:600;padding:2px 0 4px;color:#38404f}
figure{margin:10px 0 18px}
figure img{max-width:100%;height:auto;border:1px solid #e3e6eb}
figcaption{font-size:.85em;color:#5b6476}
.note{background:#f4f7fb;border-left:4px solid #8aa4c8;padding:8px 14px;margin:10px 0}
.muted{color:#6b7385;font-size:.85em}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:6px 16px}
.gallery figure{margin:4px 0 10px}
.bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}
"""


# --------------------------------------------------------------------------- blocks


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str  # `code` and **bold** are rendered; everything else is escaped
    css: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)
    highlight: set[int] = field(default_factory=set)


@dataclass
class Figure:
    png: bytes
    md_path: str
    caption: str


@dataclass
class Cards:
    items: list[tuple[str, ...]]  # (key, value) or (key, value, small print under the value)


@dataclass
class Grid:
    tables: list[Table]


@dataclass
class Gallery:
    figures: list[Figure]  # side by side where the page is wide enough (HTML)


Block = Heading | Para | Table | Figure | Cards | Grid | Gallery


# --------------------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 4) -> str:
    """Compact text for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}"
    if isinstance(value, list | tuple):
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(value) > 8 and len(numbers) == len(value):  # e.g. calibration reference scores
            return f"{len(value)} values, {min(numbers):.{digits}g} … {max(numbers):.{digits}g}"
        if len(value) > 40:
            head = ", ".join(fmt(v, digits) for v in value[:40])
            return f"{head}, … ({len(value) - 40} more)"
        if all(isinstance(v, str | int | float) for v in value):
            return ", ".join(fmt(v, digits) for v in value) if value else "[]"
        return json.dumps(value, default=str)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def fixed(value: Any, decimals: int) -> str:
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.{decimals}f}" if math.isfinite(v) else "–"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            out.append(f"<strong>{html.escape(m.group(2))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _md_text(text: str) -> str:
    """Markdown-safe text: ``<``, ``>``, ``&`` escaped outside `code` spans (no raw HTML)."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") else html.escape(p, quote=False) for p in parts)


def md_cell(text: str) -> str:
    return _md_text(text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " "))


# --------------------------------------------------------------------------- renderers


def _render_table_html(t: Table) -> str:
    num = t.numeric or [False] * len(t.header)
    parts = ['<div class="scroll"><table>']
    if t.caption:
        parts.append(f"<caption>{html.escape(t.caption)}</caption>")
    head = "".join(
        f"<th{' class=num' if n else ''}>{html.escape(h)}</th>"
        for h, n in zip(t.header, num, strict=True)
    )
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cls = ' class="hl"' if i in t.highlight else ""
        cells = "".join(
            f"<td{' class=num' if n else ''}>{html.escape(c)}</td>"
            for c, n in zip(row, num, strict=True)
        )
        parts.append(f"<tr{cls}>{cells}</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _render_figure_html(b: Figure) -> str:
    data = base64.b64encode(b.png).decode("ascii")
    cap = html.escape(b.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def render_html(title: str, blocks: Sequence[Block]) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            body.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{b.css}"' if b.css else ""
            body.append(f"<p{cls}>{_inline_html(b.text)}</p>")
        elif isinstance(b, Table):
            body.append(_render_table_html(b))
        elif isinstance(b, Grid):
            inner = "".join(f"<div>{_render_table_html(t)}</div>" for t in b.tables)
            body.append(f'<div class="grid">{inner}</div>')
        elif isinstance(b, Cards):
            cards = "".join(
                f'<div class="card"><div class="v">{html.escape(item[1])}</div>'
                f'<div class="k">{html.escape(item[0])}</div>'
                + "".join(f'<div class="s">{html.escape(x)}</div>' for x in item[2:])
                + "</div>"
                for item in b.items
            )
            body.append(f'<div class="summary">{cards}</div>')
        elif isinstance(b, Figure):
            body.append(_render_figure_html(b))
        elif isinstance(b, Gallery):
            inner = "".join(_render_figure_html(f) for f in b.figures)
            body.append(f'<div class="gallery">{inner}</div>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body>\n</html>\n"
    )


def _render_table_md(t: Table) -> list[str]:
    lines = [f"*{md_cell(t.caption)}*", ""] if t.caption else []
    num = t.numeric or [False] * len(t.header)
    lines.append("| " + " | ".join(md_cell(h) for h in t.header) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in num) + "|")
    for i, row in enumerate(t.rows):
        cells = [md_cell(c) for c in row]
        if i in t.highlight:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _render_figure_md(b: Figure) -> list[str]:
    caption = md_cell(b.caption)
    return [f"![{caption}]({b.md_path})", "", f"*{caption}*", ""]


def render_md(title: str, blocks: Sequence[Block]) -> str:
    lines = [f"# {_md_text(title)}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + _md_text(b.text), ""]
        elif isinstance(b, Para):
            lines += [_md_text(b.text), ""]
        elif isinstance(b, Table):
            lines += _render_table_md(b)
        elif isinstance(b, Grid):
            for t in b.tables:
                lines += _render_table_md(t)
        elif isinstance(b, Cards):
            lines += [
                " · ".join(
                    f"**{_md_text(item[0])}** " + " ".join(_md_text(x) for x in item[1:])
                    for item in b.items
                ),
                "",
            ]
        elif isinstance(b, Figure):
            lines += _render_figure_md(b)
        elif isinstance(b, Gallery):
            for f in b.figures:
                lines += _render_figure_md(f)
    return "\n".join(lines).rstrip() + "\n"
