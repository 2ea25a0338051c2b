"""report.html: one self-contained file — charts as PNG data URIs, inline CSS, no scripts, no links."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from reports import markdown
from reports.charts.common import Chart, Section, TextTable
from reports.data import RunData

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1180px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-style: italic; }
table { border-collapse: collapse; margin: .6rem 0 1.4rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .25rem .6rem; vertical-align: top; }
th { background: #f6f6f6; text-align: left; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff8e1; border-left: 4px solid #f1ce63; padding: .4rem .8rem; }
nav ul { columns: 2; }
"""


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def figure(chart: Chart, out: Path) -> str:
    data = base64.b64encode((out / f"{chart.name}.png").read_bytes()).decode("ascii")
    w, h = chart.size_px
    return (f'<figure id="{e(chart.name)}"><img alt="{e(chart.title)}" width="{w}" height="{h}" '
            f'src="data:image/png;base64,{data}"><figcaption>{e(chart.caption)}</figcaption></figure>')


def table(t: TextTable) -> str:
    align = t.align or "l" + "r" * (len(t.header) - 1)
    head = "".join(f'<th class="{a}">{e(h)}</th>' for a, h in zip(align, t.header, strict=False))
    body = "".join("<tr>" + "".join(f'<td class="{a}">{e(c)}</td>'
                                    for a, c in zip(align, row, strict=False)) + "</tr>"
                   for row in t.rows)
    return (f"<table><caption>{e(t.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def section(sec: Section, index: int, out: Path) -> str:
    parts = [f'<section id="s{index}"><h2>{e(sec.title)}</h2>']
    parts += [figure(c, out) for c in sec.charts]
    parts += [table(t) for t in sec.tables]
    parts += [f'<p class="note">{e(n)}.</p>' for n in sec.notes]
    return "\n".join(parts) + "</section>"


def render(runs: Sequence[RunData], sections: Sequence[Section], out: Path, generated_at: str) -> str:
    """The whole page; reads the PNGs already written to ``out``."""
    title = markdown.title(runs)
    runs_table = table(TextTable("Runs included", markdown.RUN_HEADER, markdown.run_rows(runs),
                                 align="lllllll"))
    toc = "".join(f'<li><a href="#s{i}">{e(s.title)}</a></li>' for i, s in enumerate(sections))
    body = "\n".join(section(s, i, out) for i, s in enumerate(sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n"
            f"<header><h1>{e(title)}</h1><p class=\"meta\">Generated {e(generated_at)} from "
            f"{len(runs)} run director{'y' if len(runs) == 1 else 'ies'}.</p>{runs_table}"
            f"<nav><ul>{toc}</ul></nav></header>\n<main>{body}</main></body></html>\n")
