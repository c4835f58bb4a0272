"""Inline SVG for our self-contained HTML pages: the one chart module (the report's and the audit's charts).

Why not a plotting library: the pages open offline with no script, and every mark carries a ``<title>``
tooltip and ``data-*`` attributes that people hover and tests read. Altair, Bokeh, Plotly and pygal need
JavaScript for their tooltips; matplotlib's SVG has neither without post-processing, and it would add a
large dependency for four kinds of mark. Every text and attribute value is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from html import escape

Scale = Callable[[datetime], float]


def svg(width: float, height: float, body: Iterable[str], label: str) -> str:
    return (f'<svg role="img" aria-label="{escape(label)}" '
            f'width="{width:g}" height="{height:g}" viewBox="0 0 {width:g} {height:g}">{"".join(body)}</svg>')


def rect(x: float, y: float, width: float, height: float, fill: str, tip: str | None = None, *,
         cls: str | None = None, data: Mapping[str, object] | None = None) -> str:
    """A bar or a cell; ``tip`` is its tooltip, ``data`` its ``data-*`` attributes (in order)."""
    head = f'<rect{_attributes(cls, data)} x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" ' \
           f'fill="{escape(fill)}"'
    return f"{head}><title>{escape(tip)}</title></rect>" if tip is not None else f"{head}/>"


def circle(cx: float, cy: float, r: float, fill: str, tip: str) -> str:
    return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:g}" fill="{escape(fill)}" stroke="#fff">'
            f"<title>{escape(tip)}</title></circle>")


def text(x: float, y: float, label: str, *, anchor: str | None = None, rotate: float | None = None) -> str:
    where = (f'transform="translate({x:.1f},{y:.1f}) rotate({rotate:g})"' if rotate is not None
             else f'x="{x:.1f}" y="{y:.1f}"')
    align = f' text-anchor="{anchor}"' if anchor else ""
    return f"<text {where}{align}>{escape(label)}</text>"


def line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#999") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'


def value_axes(left: float, right: float, base: float, top_value: int) -> list[str]:
    """A baseline, a y axis from 10 px to ``base`` and its two labels: 0 and ``top_value``."""
    return [line(left - 2, base, right, base), line(left - 2, 10, left - 2, base),
            text(left - 8, 14, str(top_value), anchor="end"), text(left - 8, base, "0", anchor="end")]


def time_scale(start: datetime, end: datetime, left: float, right: float) -> Scale:
    """Maps a moment in [start, end] to an x between ``left`` and ``right`` (a span of at least 1 s)."""
    span = max((end - start).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return left + (right - left) * (moment - start).total_seconds() / span

    return x


def time_axis(start: datetime, end: datetime, base: float, x: Scale, ticks: int = 5) -> list[str]:
    """A baseline under a time scale with ``ticks + 1`` labelled ticks (month-day and time)."""
    out = [line(x(start), base, x(end), base, "#adb5bd")]
    for k in range(ticks + 1):
        moment = start + (end - start) * k / ticks
        anchor = "start" if k == 0 else "end" if k == ticks else "middle"
        out.append(line(x(moment), base, x(moment), base + 4, "#adb5bd"))
        out.append(text(x(moment), base + 16, moment.strftime("%m-%d %H:%M:%S"), anchor=anchor))
    return out


def nice_step(span: float, bins: int = 10) -> float:
    """A bin width of 1, 2 or 5 times a power of ten that covers ``span`` in about ``bins`` bins."""
    if span <= 0:
        return 1.0
    raw = span / bins
    power = 10.0 ** math.floor(math.log10(raw))
    return next(float(m * power) for m in (1, 2, 5, 10) if m * power >= raw)


def histogram(values: list[float], bins: int = 10) -> list[tuple[float, float, int]]:
    """(low, high, count) bins of a nice width from 0 to the largest value."""
    if not values:
        return []
    step = nice_step(max(values), bins)
    count = max(1, math.ceil(max(values) / step + 1e-9))
    if max(values) == count * step:
        count += 1  # the largest value belongs to the bin starting at it
    buckets = [0] * count
    for value in values:
        buckets[min(count - 1, int(value // step))] += 1
    return [(n * step, (n + 1) * step, c) for n, c in enumerate(buckets)]


def _attributes(cls: str | None, data: Mapping[str, object] | None) -> str:
    out = f' class="{escape(cls)}"' if cls else ""
    return out + "".join(f' data-{name}="{escape(str(value))}"' for name, value in (data or {}).items())
