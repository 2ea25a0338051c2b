"""Numbers as people read them, the same way in summary.md, report.html and chart annotations.

USD with thousands separators and no cents; percentages with one decimal; organisations as whole
numbers; milliseconds whole; ratios with three significant decimals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def usd(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    sign = "−" if round(v) < 0 else ""
    return f"{sign}${abs(v):,.0f}"


def pct(v: float) -> str:
    """A value already in percent (0–100)."""
    if not math.isfinite(v):
        return "n/a"
    return _minus(f"{v:.1f} %")


def fraction_pct(v: float) -> str:
    """A fraction (0–1) as a percentage."""
    return pct(100.0 * v)


def value(v: float, unit: str) -> str:
    """``v`` formatted by its unit (``usd``, ``pct``, ``orgs``, ``ms``, ``ratio``, other)."""
    if not math.isfinite(v):
        return "n/a"
    if unit == "usd":
        return usd(v)
    if unit == "pct":
        return pct(v)
    if unit == "orgs":
        return _minus(f"{v:,.0f}")
    if unit == "ms":
        return _minus(f"{v:,.0f} ms")
    if unit == "ratio":
        return _minus(f"{v:.3f}")
    return _minus(f"{v:,.4g}")


def _minus(text: str) -> str:
    """A typographic minus, as in USD amounts, so signs look the same everywhere."""
    return "−" + text[1:] if text.startswith("-") else text


def band(b: Mapping[str, Any], unit: str | None = None) -> str:
    """``mean (5–95 %: p5 – p95)``, or just the mean when the band is a single value."""
    u = unit if unit is not None else str(b.get("unit", ""))
    mean, p5, p95 = (float(b.get(k, math.nan)) for k in ("mean", "p5", "p95"))
    if not math.isfinite(p5) or not math.isfinite(p95) or p5 == p95 == mean:
        return value(mean, u)
    return f"{value(mean, u)} (5–95 %: {value(p5, u)} – {value(p95, u)})"


def signed(v: float, unit: str) -> str:
    """A difference with an explicit sign."""
    if not math.isfinite(v):
        return "n/a"
    text = value(abs(v), unit)
    return text if round(v, 12) == 0 else ("+" if v > 0 else "−") + text


def relative(diff: float, ref: float) -> str:
    if not math.isfinite(diff) or not math.isfinite(ref) or ref == 0:
        return "n/a"
    r = 100.0 * diff / abs(ref)
    return ("+" if r > 0 else "−" if r < 0 else "") + pct(abs(r))
