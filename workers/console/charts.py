"""Server-rendered SVG charts (pure): no JavaScript, no build step, readable by screen readers.

Each chart comes with its numbers as a table (:class:`Chart`), which the page shows beside the
picture, so nothing is only in the picture. Every label is escaped; sizes are in the SVG's own
coordinates (``viewBox``), so a chart scales with the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from markupsafe import Markup, escape

#: colours with at least 4.5:1 contrast on white, and the order series are stacked and listed in
PALETTE: dict[str, str] = {
    "succeeded": "#1a7f37", "failed": "#cf222e", "running": "#0969da", "queued": "#57606a",
    "rejected": "#9a6700", "cancelled": "#6e7781", "timed_out": "#8250df",
    "admitted": "#0969da", "duplicates": "#9a6700", "rate_limited": "#cf222e",
    "p50": "#0969da", "p95": "#8250df",
    "passed": "#1a7f37", "skipped": "#6e7781", "pending": "#57606a",
}
FALLBACK = "#24292f"
WIDTH = 720
FONT = 12


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG picture and the same numbers as a table."""

    svg: Markup
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: series shown, with their colours (the legend)
    legend: tuple[tuple[str, str], ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.rows


def colour(name: str) -> str:
    return PALETTE.get(name, FALLBACK)


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above ``value`` (an axis maximum a reader can read)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def seconds(value: float) -> str:
    """A duration for people: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def _svg(title: str, desc: str, height: int, body: Sequence[str], ident: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" class="chart" font-size="{FONT}" '
        f'font-family="system-ui, sans-serif"><title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(desc)}</desc>{"".join(body)}</svg>')


def stacked_bars(ident: str, title: str, buckets: Sequence[datetime], series: Sequence[str],
                 counts: Mapping[tuple[datetime, str], int], *, unit: str = "runs") -> Chart:
    """Counts per time bucket, stacked by series (runs by outcome, events by what the gate did)."""
    height, left, bottom, top = 200, 44, 28, 10
    plot_w, plot_h = WIDTH - left - 10, height - top - bottom
    totals = [sum(counts.get((b, s), 0) for s in series) for b in buckets]
    peak = _nice_max(max(totals, default=0))
    body: list[str] = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#57606a"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="#24292f">{_fmt(peak)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" fill="#24292f">0</text>',
        f'<line x1="{left}" y1="{top}" x2="{left + plot_w}" y2="{top}" stroke="#d0d7de" stroke-dasharray="3 3"/>',
    ]
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot - 1.0, 1.0) if len(buckets) > 1 else min(plot_w, 40.0)
    label_every = max(1, math.ceil(len(buckets) / 8))
    names = {name: str(escape(name)) for name in series}
    rows: list[tuple[str, ...]] = []
    for index, bucket in enumerate(buckets):
        x = left + index * slot
        y = float(top + plot_h)
        hhmm = bucket.strftime("%H:%M")
        for name in series:
            value = counts.get((bucket, name), 0)
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour(name)}">'
                        f"<title>{hhmm} UTC: {names[name]} {value}</title></rect>")
        if index % label_every == 0:
            body.append(f'<text x="{x:.1f}" y="{height - 8}" fill="#24292f">{hhmm}</text>')
        if totals[index]:
            rows.append((bucket.strftime("%Y-%m-%d %H:%M UTC"),
                         *(str(counts.get((bucket, s), 0)) for s in series), str(totals[index])))
    first = buckets[0].strftime("%H:%M") if buckets else "-"
    desc = (f"{sum(totals)} {unit} in {len(buckets)} intervals from {first} UTC; "
            f"the tallest interval holds {max(totals, default=0)}")
    return Chart(_svg(title, desc, height, body, ident), ("interval", *series, "total"), tuple(rows),
                 tuple((s, colour(s)) for s in series))


def duration_bars(ident: str, title: str, rows_in: Sequence[tuple[str, int, float, float]]) -> Chart:
    """p50 and p95 durations per template: ``(template, runs, p50 seconds, p95 seconds)``."""
    line, left, top = 34, 250, 8
    height = max(top * 2 + line * len(rows_in), 40)
    plot_w = WIDTH - left - 90
    peak = _nice_max(max((r[3] for r in rows_in), default=0.0))
    body: list[str] = []
    rows: list[tuple[str, ...]] = []
    for index, (template, runs, p50, p95) in enumerate(rows_in):
        y = top + index * line
        label = template if len(template) <= 36 else template[:35] + "…"
        body.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end" fill="#24292f">{escape(label)}'
                    f'<title>{escape(template)}</title></text>')
        for offset, name, value in ((2, "p95", p95), (16, "p50", p50)):
            w = max(plot_w * value / peak, 1.0)
            body.append(f'<rect x="{left}" y="{y + offset}" width="{w:.1f}" height="12" fill="{colour(name)}">'
                        f'<title>{escape(template)} {name} {escape(seconds(value))} over {runs} runs</title></rect>')
            body.append(f'<text x="{left + w + 6:.1f}" y="{y + offset + 10}" fill="#24292f">'
                        f'{name} {escape(seconds(value))}</text>')
        rows.append((template, str(runs), seconds(p50), seconds(p95)))
    desc = f"{len(rows_in)} templates; the slowest p95 is {seconds(max((r[3] for r in rows_in), default=0.0))}"
    return Chart(_svg(title, desc, height, body, ident), ("template", "runs", "p50", "p95"), tuple(rows),
                 (("p50", colour("p50")), ("p95", colour("p95"))))


@dataclass(frozen=True, slots=True)
class Span:
    """One step on a timeline: seconds from the run's first step, and how long it took."""

    name: str
    start: float
    duration: float
    status: str
    #: still running (the bar ends at "now")
    open: bool = False


def timeline(ident: str, title: str, spans: Sequence[Span]) -> Chart:
    """Steps as bars along one time axis (parallel steps overlap in time, each on its own row)."""
    line, left, top, bottom = 26, 110, 8, 24
    height = top + bottom + line * max(len(spans), 1)
    plot_w = WIDTH - left - 110
    end = max((s.start + s.duration for s in spans), default=0.0)
    scale = _nice_max(end)
    body: list[str] = [f'<line x1="{left}" y1="{height - bottom}" x2="{left + plot_w}" y2="{height - bottom}" '
                       'stroke="#57606a"/>',
                       f'<text x="{left}" y="{height - 6}" fill="#24292f">0 s</text>',
                       f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" fill="#24292f">'
                       f'{escape(seconds(scale))}</text>']
    rows: list[tuple[str, ...]] = []
    for index, span in enumerate(spans):
        y = top + index * line
        x = left + plot_w * span.start / scale
        w = max(plot_w * span.duration / scale, 2.0)
        state = f"{span.status}{' (running)' if span.open else ''}"
        opacity = ' fill-opacity="0.6"' if span.open else ""
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="#24292f">{escape(span.name)}</text>')
        body.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="14" fill="{colour(span.status)}"'
                    f'{opacity}><title>{escape(span.name)}: {escape(state)}, '
                    f'starts at {escape(seconds(span.start))}, takes {escape(seconds(span.duration))}</title></rect>')
        body.append(f'<text x="{x + w + 6:.1f}" y="{y + 15}" fill="#24292f">{escape(seconds(span.duration))}</text>')
        rows.append((span.name, state, seconds(span.start), seconds(span.duration)))
    desc = f"{len(spans)} steps over {seconds(end)}"
    statuses = tuple(dict.fromkeys(s.status for s in spans))
    return Chart(_svg(title, desc, height, body, ident), ("step", "status", "starts at", "duration"), tuple(rows),
                 tuple((s, colour(s)) for s in statuses))
