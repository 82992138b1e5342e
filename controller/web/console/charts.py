"""Line charts as inline SVG geometry, computed on the server (no chart script in the browser).

Pure: series and bands in, coordinates out; the template draws them. A line breaks where a
series has no value for longer than `gap` (an outage is a gap, never a fast check); bands mark
spans behind the lines: failed checks, incidents and maintenance.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

WIDTH = 640
HEIGHT = 180
PAD_LEFT = 44
PAD_BOTTOM = 18
MAX_MARKS = 30
# Colour-blind-safe palette (Okabe-Ito); a series takes the next one.
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
# Each kind of band (its CSS class) and what the chart's legend calls it.
BAND_LEGENDS = {
    "down": "every country failed",
    "failing": "some countries failed",
    "incident": "incident",
    "maintenance": "maintenance",
}
BAND_KINDS = tuple(BAND_LEGENDS)


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    segments: list[str]  # "x,y x,y ..." per unbroken run, for <polyline points>
    marks: list[tuple[str, str]]  # (x, y) of each point when few: a lone point shows too


@dataclass(frozen=True)
class Band:
    """A span behind the lines: `kind` one of BAND_KINDS (its CSS class), `title` its tooltip."""

    x: str
    width: str
    kind: str
    title: str

    @property
    def legend(self) -> str:
        return BAND_LEGENDS[self.kind]


@dataclass(frozen=True)
class Chart:
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    bands: list[Band] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, the time there)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM
    top: int = 6

    @property
    def empty(self) -> bool:
        return not self.lines and not self.bands


def _nice_max(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10  # pragma: no cover - the loop always returns


def _runs(
    pts: Sequence[tuple[datetime, float | None]], gap: timedelta | None
) -> list[list[tuple[datetime, float]]]:
    """The points with a value, split where one is missing or the next is more than `gap`
    later."""
    runs: list[list[tuple[datetime, float]]] = []
    last: datetime | None = None
    for t, v in sorted(pts, key=lambda p: p[0]):
        if v is None:
            last = None
            continue
        if last is None or (gap is not None and t - last > gap) or not runs:
            runs.append([])
        runs[-1].append((t, v))
        last = t
    return runs


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float | None]]]],
    start: datetime,
    end: datetime,
    bands: Sequence[tuple[datetime, datetime, str, str]] = (),
    gap: timedelta | None = None,
) -> Chart:
    """`series`: (label, [(time, value)]) each; a point with no value breaks its line, and so
    does a step longer than `gap`. `bands`: (from, to, kind, title), clipped to the range. The
    y axis starts at 0 and ends at a round number above the largest value."""
    values = [v for _, pts in series for _, v in pts if v is not None]
    span = (end - start).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - 6

    def x_of(t: datetime) -> float:
        return PAD_LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0)

    shown = []
    for b_from, b_to, kind, title in bands:
        if b_to <= start or b_from >= end:
            continue
        x0, x1 = x_of(b_from), x_of(b_to)
        shown.append(Band(f"{x0:.1f}", f"{max(x1 - x0, 2.0):.1f}", kind, title))
    if not values:
        return Chart(bands=shown) if shown else Chart()
    top = _nice_max(max(values))

    def xy(t: datetime, v: float) -> tuple[str, str]:
        y = HEIGHT - PAD_BOTTOM - plot_h * v / top
        return f"{x_of(t):.1f}", f"{y:.1f}"

    lines = []
    for i, (label, pts) in enumerate(series):
        runs = [[xy(t, v) for t, v in run] for run in _runs(pts, gap)]
        coords = [c for run in runs for c in run]
        if coords:
            segments = [" ".join(f"{x},{y}" for x, y in run) for run in runs]
            marks = coords if len(coords) <= MAX_MARKS else [r[0] for r in runs if len(r) == 1]
            lines.append(Line(label, COLOURS[i % len(COLOURS)], segments, marks))
    ticks = [
        (HEIGHT - PAD_BOTTOM - plot_h * f, f"{top * f:g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    return Chart(lines, ticks, shown, x_ticks(start, end, x_of))


def x_ticks(
    start: datetime, end: datetime, x_of: Callable[[datetime], float]
) -> list[tuple[float, str]]:
    """Five labels along the time axis (UTC): the day (`27 Nov`) over two days or more, else
    the time of day (`14:30`)."""
    span = end - start
    fmt = "{d.day} {d:%b}" if span >= timedelta(days=2) else "{d:%H:%M}"
    at = [start + span * f for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return [(round(x_of(t), 1), fmt.format(d=t.astimezone(UTC))) for t in at]
