"""A small SVG writer for the report charts: bars, a funnel and lines.

No plotting dependency: a chart is a few dozen elements, and SVG text is easy
to check (tests parse it with ``xml.etree``). Every data mark carries
``class`` and ``data-*`` attributes (series, category, value) so a test or a
browser script can read the numbers back from the picture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

#: A colour-blind-safe palette (Okabe & Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

WIDTH = 760
HEIGHT = 420
MARGIN_LEFT = 70
MARGIN_RIGHT = 170
MARGIN_TOP = 50
MARGIN_BOTTOM = 80


class Svg:
    """Accumulates elements and writes one standalone SVG document."""

    def __init__(self, width: int, height: int, title: str) -> None:
        self.width = width
        self.height = height
        self.parts: list[str] = []
        self.title = title

    def add(self, tag: str, text: str | None = None, **attrs: object) -> None:
        rendered = " ".join(f"{k.rstrip('_').replace('_', '-')}={quoteattr(_fmt(v))}" for k, v in attrs.items() if v is not None)
        if text is None:
            self.parts.append(f"<{tag} {rendered}/>")
        else:
            self.parts.append(f"<{tag} {rendered}>{escape(text)}</{tag}>")

    def text(self, x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", cls: str = "label", **extra: object) -> None:
        self.add("text", text, x=x, y=y, font_size=size, text_anchor=anchor, class_=cls, **extra)

    def render(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" font-family="sans-serif" role="img">'
        )
        body = "\n".join(self.parts)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"{head}\n<title>{escape(self.title)}</title>\n"
            f'<rect x="0" y="0" width="{self.width}" height="{self.height}" fill="#ffffff" class="background"/>\n'
            f"{body}\n</svg>\n"
        )

    def write(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(out)  # never a half-written chart
        return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"
    return str(v)


def _nice_max(value: float) -> float:
    """Round an axis maximum up to 1, 2, 2.5 or 5 × a power of ten."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    base = 10**exp
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return step * base
    return 10 * base


def _short(value: float) -> str:
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.1f}M"
    if a >= 1e4:
        return f"{value / 1e3:.0f}k"
    if a >= 1e3:
        return f"{value / 1e3:.1f}k"
    if a == int(a):
        return f"{int(value)}"
    return f"{value:.2f}"


def _frame(svg: Svg, title: str, ymax: float, ylabel: str, *, percent: bool = False) -> tuple[float, float, float, float]:
    """Title, y axis with 5 gridlines; returns the plot box (x0, y0, x1, y1)."""
    x0, y0 = MARGIN_LEFT, MARGIN_TOP
    x1, y1 = svg.width - MARGIN_RIGHT, svg.height - MARGIN_BOTTOM
    svg.text(svg.width / 2, 28, title, size=16, anchor="middle", cls="title")
    for i in range(6):
        v = ymax * i / 5
        y = y1 - (y1 - y0) * i / 5
        svg.add("line", x1=x0, y1=y, x2=x1, y2=y, stroke="#dddddd", class_="grid")
        svg.text(x0 - 6, y + 4, f"{100 * v:.0f}%" if percent else _short(v), size=10, anchor="end", cls="tick")
    svg.add("line", x1=x0, y1=y1, x2=x1, y2=y1, stroke="#333333", class_="axis")
    svg.add("line", x1=x0, y1=y0, x2=x0, y2=y1, stroke="#333333", class_="axis")
    svg.text(16, (y0 + y1) / 2, ylabel, size=11, anchor="middle", cls="axis-label", transform=f"rotate(-90 16 {(y0 + y1) / 2})")
    return x0, y0, x1, y1


def _legend(svg: Svg, names: Sequence[str], x: float, y: float) -> None:
    for i, name in enumerate(names):
        svg.add("rect", x=x, y=y + 20 * i, width=12, height=12, fill=PALETTE[i % len(PALETTE)], class_="legend-key")
        svg.text(x + 18, y + 20 * i + 10, name if len(name) <= 22 else name[:21] + "…", size=11, cls="legend")


def _empty(svg: Svg, note: str) -> None:
    svg.text(svg.width / 2, svg.height / 2, note, size=14, anchor="middle", cls="note")


def bar_chart(
    path: str | Path,
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str = "",
    percent: bool = False,
    empty_note: str = "no data",
) -> Path:
    """Grouped vertical bars: one group per category, one bar per series."""
    svg = Svg(WIDTH, HEIGHT, title)
    values = [v for s in series.values() for v in s if v is not None]
    ymax = _nice_max(max(values, default=0.0))
    x0, y0, x1, y1 = _frame(svg, title, ymax, ylabel, percent=percent)
    names = list(series)
    if not categories or not any(values):  # all zero: nothing to draw
        _empty(svg, empty_note)
        return svg.write(path)
    group_w = (x1 - x0) / len(categories)
    bar_w = max(1.0, group_w * 0.8 / max(1, len(names)))
    for ci, cat in enumerate(categories):
        gx = x0 + ci * group_w + group_w * 0.1
        for si, name in enumerate(names):
            v = series[name][ci]
            v = 0.0 if v is None else float(v)
            h = (y1 - y0) * max(v, 0.0) / ymax
            svg.add(
                "rect",
                x=gx + si * bar_w,
                y=y1 - h,
                width=bar_w,
                height=h,
                fill=PALETTE[si % len(PALETTE)],
                class_="bar",
                data_series=name,
                data_category=cat,
                data_value=repr(v),
            )
        label = cat if len(cat) <= 14 else cat[:13] + "…"
        cx = x0 + (ci + 0.5) * group_w
        svg.text(cx, y1 + 16, label, size=10, anchor="end" if len(categories) > 6 else "middle", cls="category",
                 transform=f"rotate(-35 {cx:.1f} {y1 + 16})" if len(categories) > 6 else None)
    _legend(svg, names, x1 + 16, y0)
    return svg.write(path)


def funnel_chart(path: str | Path, title: str, stages: Sequence[str], counts: Sequence[int], *, empty_note: str = "no leads") -> Path:
    """A centred funnel: one bar per stage, width ∝ count, with the step conversion rate."""
    svg = Svg(WIDTH, HEIGHT, title)
    svg.text(svg.width / 2, 28, title, size=16, anchor="middle", cls="title")
    top = max(counts, default=0)
    if not stages or top <= 0:
        _empty(svg, empty_note)
        return svg.write(path)
    x_mid = (WIDTH - 150) / 2 + 20
    full = WIDTH - 260
    row_h = (HEIGHT - MARGIN_TOP - 30) / len(stages)
    for i, (stage, n) in enumerate(zip(stages, counts)):
        w = max(2.0, full * n / top)
        y = MARGIN_TOP + i * row_h
        svg.add("rect", x=x_mid - w / 2, y=y, width=w, height=row_h * 0.8, fill=PALETTE[i % len(PALETTE)],
                class_="stage", data_stage=stage, data_value=str(n))
        svg.text(x_mid, y + row_h * 0.5, f"{stage}: {n:,}", size=12, anchor="middle", cls="stage-label", fill="#ffffff" if w > 120 else "#000000")
        if i > 0:
            prev = counts[i - 1]
            rate = f"{100 * n / prev:.1f}%" if prev else "-"
            svg.text(WIDTH - 20, y + row_h * 0.5, f"↓ {rate}", size=11, anchor="end", cls="rate", data_stage=stage)
    return svg.write(path)


def line_chart(
    path: str | Path,
    title: str,
    xlabels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str = "",
    percent: bool = False,
    ymax: float | None = None,
    empty_note: str = "no data",
) -> Path:
    """Lines with points; None breaks a line (a period without data)."""
    svg = Svg(WIDTH, HEIGHT, title)
    values = [v for s in series.values() for v in s if v is not None]
    top = ymax if ymax is not None else _nice_max(max(values, default=0.0))
    x0, y0, x1, y1 = _frame(svg, title, top, ylabel, percent=percent)
    if not xlabels or not values:
        _empty(svg, empty_note)
        return svg.write(path)
    n = len(xlabels)
    step = (x1 - x0) / max(1, n - 1) if n > 1 else 0
    xs = [x0 + step * i if n > 1 else (x0 + x1) / 2 for i in range(n)]
    for si, (name, vals) in enumerate(series.items()):
        colour = PALETTE[si % len(PALETTE)]
        pts: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(vals):
            if v is None:
                if pts:
                    segments.append(pts)
                pts = []
                continue
            y = y1 - (y1 - y0) * float(v) / top
            pts.append(f"{xs[i]:.1f},{y:.1f}")
            svg.add("circle", cx=xs[i], cy=y, r=3.5, fill=colour, class_="point", data_series=name, data_category=xlabels[i], data_value=repr(float(v)))
        if pts:
            segments.append(pts)
        for seg in segments:
            svg.add("polyline", points=" ".join(seg), fill="none", stroke=colour, stroke_width=2, class_="line", data_series=name)
    every = max(1, math.ceil(n / 12))
    for i, lab in enumerate(xlabels):
        if i % every == 0:
            svg.text(xs[i], y1 + 16, lab, size=10, anchor="middle", cls="category")
    _legend(svg, list(series), x1 + 16, y0)
    return svg.write(path)
