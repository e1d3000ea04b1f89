"""`mailgate report` output: a text table, JSON, CSV, or one self-contained HTML page with inline SVG charts.

The HTML loads nothing from anywhere (no scripts, stylesheets or fonts), so it can be mailed or
archived as one file; every text in it goes through jinja2's autoescaping.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from mailgate.reporting import Durations, Report

FORMATS = ("table", "json", "csv", "html")
PRIORITY_COLOURS = {"low": "#7fb3d5", "medium": "#f4d03f", "high": "#eb984e", "urgent": "#c0392b"}
AGE_COLOURS = ("#a9dfbf", "#52be80", "#f5b041", "#dc7633", "#922b21")
BAR_COLOUR = "#2e86c1"
RESPONSE_COLOUR = "#8e44ad"
FALLBACK_COLOUR = "#95a5a6"
MAX_DAILY_BARS = 92


def render(report: Report, fmt: str) -> str:
    renderers = {"table": render_table, "json": render_json, "csv": render_csv, "html": render_html}
    return renderers[fmt](report)


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2) + "\n"


def human_duration(seconds: float | None) -> str:
    """"3d 4h", "2h 30m", "45m", "20s"; "-" for no value."""
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{round(seconds)}s"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    return f"{hours}h {mins}m" if hours and mins else (f"{hours}h" if hours else f"{mins}m")


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _duration_line(name: str, value: Durations) -> str:
    return (
        f"  {name:<16} median {human_duration(value.median_seconds):>8}   "
        f"p90 {human_duration(value.p90_seconds):>8}   ({value.count} tickets)"
    )


def render_table(report: Report) -> str:
    """Plain text for a terminal."""
    scope = f" in queue {report.queue}" if report.queue else ""
    lines = [
        f"Tickets created since {report.since:%Y-%m-%d %H:%M} UTC{scope}: {report.tickets}",
        "",
        "By channel:  " + "  ".join(f"{k} {v}" for k, v in report.by_channel.items()),
        "By priority: " + "  ".join(f"{k} {v}" for k, v in report.by_priority.items()),
        "",
        "Response times:",
        _duration_line("first response", report.first_response),
        _duration_line("resolution", report.resolution),
        "",
        "SLA compliance:",
        *(
            f"  {target:<16} {percent(c.rate):>7}   ({c.met} of {c.measured} measured)"
            for target, c in report.sla.items()
        ),
        "",
        f"Escalated: {report.escalated} ({percent(report.escalation_rate)})   "
        f"Reopened: {report.reopened} ({percent(report.reopen_rate)})",
        "",
        "Tickets per day:",
        *(f"  {day}  {count:>5}  {'#' * min(count, 60)}" for day, count in report.by_day),
        "",
        _backlog_table(report.backlog),
    ]
    return "\n".join(lines) + "\n"


def _backlog_table(backlog: dict[str, dict[str, int]]) -> str:
    ages = list(next(iter(backlog.values()), {}))
    header = f"Backlog by age   {'status':<10}" + "".join(f"{age:>7}" for age in ages) + f"{'total':>8}"
    rows = [
        f"                 {status:<10}" + "".join(f"{row[age]:>7}" for age in ages) + f"{sum(row.values()):>8}"
        for status, row in backlog.items()
    ]
    return "\n".join([header, *rows])


def render_csv(report: Report) -> str:
    """Long format, one figure per row: section, key, value (durations in seconds, rates as fractions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    for section, key, value in _csv_rows(report):
        writer.writerow([section, key, "" if value is None else value])
    return out.getvalue()


def _csv_rows(report: Report) -> list[tuple[str, str, object]]:
    rows: list[tuple[str, str, object]] = [
        ("summary", "since", report.since.isoformat()),
        ("summary", "queue", report.queue or ""),
        ("summary", "tickets", report.tickets),
        ("summary", "escalated", report.escalated),
        ("summary", "escalation_rate", report.escalation_rate),
        ("summary", "reopened", report.reopened),
        ("summary", "reopen_rate", report.reopen_rate),
    ]
    rows += [("volume_by_day", day, count) for day, count in report.by_day]
    rows += [("volume_by_channel", key, count) for key, count in report.by_channel.items()]
    rows += [("volume_by_priority", key, count) for key, count in report.by_priority.items()]
    for name, value in (("first_response", report.first_response), ("resolution", report.resolution)):
        rows += [(name, "count", value.count), (name, "median_seconds", value.median_seconds)]
        rows.append((name, "p90_seconds", value.p90_seconds))
    for target, c in report.sla.items():
        rows += [(f"sla_{target}", "measured", c.measured), (f"sla_{target}", "met", c.met)]
        rows.append((f"sla_{target}", "compliance", c.rate))
    rows += [("first_response_distribution", label, count) for label, count in report.response_distribution]
    for status, ages in report.backlog.items():
        rows += [(f"backlog_{status}", age, count) for age, count in ages.items()]
    return rows


# -- HTML charts: geometry computed here, drawn by the template -------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    colour: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]
    grid: tuple[tuple[float, int], ...]
    baseline: float


@dataclass(frozen=True)
class Slice:
    label: str
    value: int
    colour: str
    dash: str
    offset: float
    share: str


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    colour: str
    label: str
    value: int


@dataclass(frozen=True)
class StackRow:
    y: float
    label: str
    total: int
    segments: tuple[Segment, ...]


_PLOT_LEFT, _PLOT_TOP, _PLOT_BOTTOM = 40.0, 10.0, 30.0


def bar_chart(
    items: Sequence[tuple[str, int]], *, colour: str, width: int = 760, height: int = 220, max_ticks: int = 8
) -> BarChart:
    """Vertical bars scaled to the largest value, with at most `max_ticks` labels under them."""
    plot_width, plot_height = width - _PLOT_LEFT - 10, height - _PLOT_TOP - _PLOT_BOTTOM
    top = _nice_ceiling(max((value for _, value in items), default=0))
    slot = plot_width / max(len(items), 1)
    baseline = _PLOT_TOP + plot_height
    bars = []
    for index, (label, value) in enumerate(items):
        bar_height = plot_height * value / top
        x = _PLOT_LEFT + index * slot + slot * 0.1
        top_y = round(baseline - bar_height, 2)
        bars.append(Bar(round(x, 2), top_y, round(slot * 0.8, 2), round(bar_height, 2), label, value, colour))
    step = max(1, math.ceil(len(items) / max_ticks))
    ticks = tuple(
        (round(_PLOT_LEFT + (i + 0.5) * slot, 2), label) for i, (label, _) in enumerate(items) if i % step == 0
    )
    grid = tuple((round(baseline - plot_height * f, 2), round(top * f)) for f in (0.0, 0.5, 1.0))
    return BarChart(width, height, tuple(bars), ticks, grid, baseline)


def _nice_ceiling(value: int) -> int:
    """A round axis maximum at or above `value` (1, 2, 5, 10, 20, 50, ...), at least 1."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def donut(items: Sequence[tuple[str, int]], colours: dict[str, str], radius: float = 70.0) -> tuple[Slice, ...]:
    """Ring segments as dash patterns on one circle: no arc maths, and a single 100% slice still draws."""
    total = sum(value for _, value in items)
    circumference = 2 * math.pi * radius
    slices, offset = [], 0.0
    for label, value in items:
        if not value:
            continue
        length = circumference * value / total
        dash = f"{length:.2f} {circumference - length:.2f}"
        colour = colours.get(label, FALLBACK_COLOUR)
        slices.append(Slice(label, value, colour, dash, round(-offset, 2), percent(value / total)))
        offset += length
    return tuple(slices)


def stacked_rows(
    table: dict[str, dict[str, int]], colours: Sequence[str], *, width: float = 520.0, row_height: float = 28.0
) -> tuple[StackRow, ...]:
    """One horizontal bar per row of `table`, split into its columns, on a common scale."""
    largest = max((sum(row.values()) for row in table.values()), default=0) or 1
    rows = []
    for index, (label, row) in enumerate(table.items()):
        x, segments = 0.0, []
        for column, (name, value) in enumerate(row.items()):
            span = width * value / largest
            if value:
                segments.append(Segment(round(x, 2), round(span, 2), colours[column % len(colours)], name, value))
            x += span
        rows.append(StackRow(round(index * row_height, 2), label, sum(row.values()), tuple(segments)))
    return tuple(rows)


def per_week(by_day: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Daily counts summed into 7-day groups, each labelled with its first day (for long periods)."""
    return tuple(
        (by_day[start][0], sum(count for _, count in by_day[start : start + 7])) for start in range(0, len(by_day), 7)
    )


def _environment() -> Environment:
    return Environment(
        loader=DictLoader({"report.html": _TEMPLATE}),
        # Queue names and labels come from configuration and data: never trusted as markup.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    """One HTML file: headline figures, four SVG charts and the tables behind them."""
    ages = list(next(iter(report.backlog.values()), {}))
    context: dict[str, Any] = {
        "report": report,
        "duration": human_duration,
        "percent": percent,
        # Beyond about three months, daily bars get thinner than a pixel: show weeks instead.
        "per": "week" if len(report.by_day) > MAX_DAILY_BARS else "day",
        "volume": bar_chart(
            per_week(report.by_day) if len(report.by_day) > MAX_DAILY_BARS else report.by_day, colour=BAR_COLOUR
        ),
        "priorities": donut(list(report.by_priority.items()), PRIORITY_COLOURS),
        "responses": bar_chart(report.response_distribution, colour=RESPONSE_COLOUR, width=420),
        "backlog": stacked_rows(report.backlog, AGE_COLOURS),
        "ages": [(age, AGE_COLOURS[i % len(AGE_COLOURS)]) for i, age in enumerate(ages)],
    }
    return _environment().get_template("report.html").render(context)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Help desk report{% if report.queue %}: {{ report.queue }}{% endif %}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #1c2833; background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #5d6d7e; font-size: 13px; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.tile { background: #eaf2f8; border-radius: 6px; padding: 10px 14px; min-width: 130px; }
.tile b { display: block; font-size: 22px; } .tile span { font-size: 12px; color: #34495e; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
svg text { font-family: sans-serif; font-size: 11px; fill: #34495e; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #d5d8dc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.key { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
</style>
</head>
<body>
<h1>Help desk report{% if report.queue %}: queue {{ report.queue }}{% endif %}</h1>
<div class="muted">Tickets created from {{ report.since.strftime("%Y-%m-%d %H:%M") }} to
{{ report.generated_at.strftime("%Y-%m-%d %H:%M") }} UTC</div>

<div class="tiles">
  <div class="tile"><b>{{ report.tickets }}</b><span>tickets</span></div>
  <div class="tile"><b>{{ duration(report.first_response.median_seconds) }}</b><span>median first response</span></div>
  <div class="tile"><b>{{ duration(report.first_response.p90_seconds) }}</b><span>p90 first response</span></div>
  <div class="tile"><b>{{ duration(report.resolution.median_seconds) }}</b><span>median resolution</span></div>
  {% for target, c in report.sla.items() %}
  <div class="tile"><b>{{ percent(c.rate) }}</b><span>SLA {{ target | replace("_", " ") }} met</span></div>
  {% endfor %}
  <div class="tile"><b>{{ percent(report.escalation_rate) }}</b><span>escalated</span></div>
  <div class="tile"><b>{{ percent(report.reopen_rate) }}</b><span>reopened</span></div>
</div>

<h2>Tickets per {{ per }}</h2>
<svg id="chart-volume" role="img" aria-label="Tickets per {{ per }}" width="{{ volume.width }}"
     height="{{ volume.height }}" viewBox="0 0 {{ volume.width }} {{ volume.height }}" xmlns="http://www.w3.org/2000/svg">
  {% for y, value in volume.grid %}
  <line x1="40" x2="{{ volume.width - 10 }}" y1="{{ y }}" y2="{{ y }}" stroke="#d5d8dc"/>
  <text x="34" y="{{ y + 4 }}" text-anchor="end">{{ value }}</text>
  {% endfor %}
  {% for bar in volume.bars %}
  <rect x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar.height }}" fill="{{ bar.colour }}">
    <title>{{ bar.label }}: {{ bar.value }}</title></rect>
  {% endfor %}
  {% for x, label in volume.ticks %}
  <text x="{{ x }}" y="{{ volume.baseline + 16 }}" text-anchor="middle">{{ label[5:] }}</text>
  {% endfor %}
</svg>

<div class="charts">
<div>
<h2>Priority mix</h2>
<svg id="chart-priority" role="img" aria-label="Priority mix" width="360" height="200" viewBox="0 0 360 200"
     xmlns="http://www.w3.org/2000/svg">
  <circle cx="100" cy="100" r="70" fill="none" stroke="#eaecee" stroke-width="36"/>
  {% for s in priorities %}
  <circle cx="100" cy="100" r="70" fill="none" stroke="{{ s.colour }}" stroke-width="36"
          stroke-dasharray="{{ s.dash }}" stroke-dashoffset="{{ s.offset }}" transform="rotate(-90 100 100)">
    <title>{{ s.label }}: {{ s.value }} ({{ s.share }})</title></circle>
  {% endfor %}
  <text x="100" y="105" text-anchor="middle" style="font-size: 18px">{{ report.tickets }}</text>
  {% for s in priorities %}
  <rect x="200" y="{{ 40 + loop.index0 * 26 }}" width="14" height="14" fill="{{ s.colour }}"/>
  <text x="222" y="{{ 52 + loop.index0 * 26 }}">{{ s.label }} {{ s.value }} ({{ s.share }})</text>
  {% endfor %}
</svg>
</div>
<div>
<h2>First response times</h2>
<svg id="chart-response" role="img" aria-label="First response time distribution" width="{{ responses.width }}"
     height="{{ responses.height }}" viewBox="0 0 {{ responses.width }} {{ responses.height }}"
     xmlns="http://www.w3.org/2000/svg">
  {% for y, value in responses.grid %}
  <line x1="40" x2="{{ responses.width - 10 }}" y1="{{ y }}" y2="{{ y }}" stroke="#d5d8dc"/>
  <text x="34" y="{{ y + 4 }}" text-anchor="end">{{ value }}</text>
  {% endfor %}
  {% for bar in responses.bars %}
  <rect x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar.height }}" fill="{{ bar.colour }}">
    <title>{{ bar.label }}: {{ bar.value }}</title></rect>
  {% endfor %}
  {% for x, label in responses.ticks %}
  <text x="{{ x }}" y="{{ responses.baseline + 16 }}" text-anchor="middle">{{ label }}</text>
  {% endfor %}
</svg>
</div>
</div>

<h2>Backlog by status and age</h2>
<svg id="chart-backlog" role="img" aria-label="Backlog by status and age" width="760"
     height="{{ backlog | length * 28 + 40 }}" viewBox="0 0 760 {{ backlog | length * 28 + 40 }}"
     xmlns="http://www.w3.org/2000/svg">
  {% for row in backlog %}
  <text x="80" y="{{ row.y + 18 }}" text-anchor="end">{{ row.label }}</text>
  {% for seg in row.segments %}
  <rect x="{{ 90 + seg.x }}" y="{{ row.y + 5 }}" width="{{ seg.width }}" height="20" fill="{{ seg.colour }}">
    <title>{{ row.label }}, {{ seg.label }}: {{ seg.value }}</title></rect>
  {% endfor %}
  <text x="{{ 90 + 530 }}" y="{{ row.y + 18 }}">{{ row.total }}</text>
  {% endfor %}
  {% for age, colour in ages %}
  <rect x="{{ 90 + loop.index0 * 90 }}" y="{{ backlog | length * 28 + 14 }}" width="12" height="12"
        fill="{{ colour }}"/>
  <text x="{{ 106 + loop.index0 * 90 }}" y="{{ backlog | length * 28 + 24 }}">{{ age }}</text>
  {% endfor %}
</svg>

<h2>Figures</h2>
<table>
  <tr><th>channel</th><th>tickets</th></tr>
  {% for channel, count in report.by_channel.items() %}<tr><td>{{ channel }}</td><td>{{ count }}</td></tr>{% endfor %}
</table>
<br>
<table>
  <tr><th>SLA target</th><th>measured</th><th>met</th><th>compliance</th></tr>
  {% for target, c in report.sla.items() %}
  <tr><td>{{ target }}</td><td>{{ c.measured }}</td><td>{{ c.met }}</td><td>{{ percent(c.rate) }}</td></tr>
  {% endfor %}
</table>
<br>
<table>
  <tr><th>backlog</th>{% for age, _ in ages %}<th>{{ age }}</th>{% endfor %}<th>total</th></tr>
  {% for row in backlog %}
  <tr><td>{{ row.label }}</td>{% for age, _ in ages %}<td>{{ report.backlog[row.label][age] }}</td>{% endfor %}
      <td>{{ row.total }}</td></tr>
  {% endfor %}
</table>
<p class="muted">Generated by mailgate. First response: the first agent reply; resolution: the first change to
resolved or closed; a target is measured when the ticket has a due time and the target is done or overdue.</p>
</body>
</html>
"""
