"""summary.md: the report's figures and tables as Markdown (no timestamps: same input, same bytes)."""

from __future__ import annotations

from collections.abc import Sequence

from reports.charts.common import Section, TextTable, sample_marks
from reports.data import RunData


def run_rows(runs: Sequence[RunData]) -> list[tuple[str, ...]]:
    """One row per run: key, kind, scenario, replications, seed(s), sample and timing, directory."""
    out: list[tuple[str, ...]] = []
    for r in runs:
        reps = r.run.summary.get("replications", r.table.reps.size if r.table is not None else "")
        seeds = r.run.meta.get("seeds") or [r.run.summary.get("seed", "")]
        out.append((r.key, r.kind, r.scenario.name, str(reps),
                    ", ".join(str(s) for s in seeds),
                    ", ".join(sample_marks(r)) or "full scale", r.name))
    return out


RUN_HEADER = ("run", "kind", "scenario", "replications", "seed", "sample", "directory")


def title(runs: Sequence[RunData]) -> str:
    names = list(dict.fromkeys(r.scenario.name for r in runs))
    return f"regionblock report — {', '.join(names)}"


def table(t: TextTable) -> str:
    align = t.align or "l" + "r" * (len(t.header) - 1)
    lines = [f"**{_cell(t.title)}**", "",
             "| " + " | ".join(_cell(h) for h in t.header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section(sec: Section) -> str:
    parts = [f"## {sec.title}\n"]
    parts += [f"![{c.title}]({c.name}.png)  \n*{c.caption}* ({c.name}.png, {c.name}.svg)\n"
              for c in sec.charts]
    parts += [table(t) for t in sec.tables]
    parts += [f"> Note: {n}.\n" for n in sec.notes]
    return "\n".join(parts)


def render(runs: Sequence[RunData], sections: Sequence[Section]) -> str:
    head = [f"# {title(runs)}\n", table(TextTable("Runs included", RUN_HEADER, run_rows(runs),
                                                  align="lllllll"))]
    return "\n".join(head + [section(s) for s in sections])
