"""Line charts as inline SVG geometry, computed on the server (no chart script in the browser).

Pure: series in, coordinates out; the template draws them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH = 640
HEIGHT = 180
PAD_LEFT = 44
PAD_BOTTOM = 18
MAX_MARKS = 30
# Colour-blind-safe palette (Okabe-Ito); a series takes the next one.
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: str  # "x,y x,y ..." for <polyline points>
    marks: list[tuple[str, str]]  # (x, y) of each point when few: a lone point shows too


@dataclass(frozen=True)
class Chart:
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM

    @property
    def empty(self) -> bool:
        return not self.lines


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


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[datetime, float | None]]]],
    start: datetime,
    end: datetime,
) -> Chart:
    """`series`: (label, [(time, value)]) each; points with no value are left out. The y axis
    starts at 0 and ends at a round number above the largest value."""
    values = [v for _, pts in series for _, v in pts if v is not None]
    if not values:
        return Chart()
    top = _nice_max(max(values))
    span = (end - start).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - 6

    def xy(t: datetime, v: float) -> tuple[str, str]:
        x = PAD_LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0)
        y = HEIGHT - PAD_BOTTOM - plot_h * v / top
        return f"{x:.1f}", f"{y:.1f}"

    lines = []
    for i, (label, pts) in enumerate(series):
        coords = [xy(t, v) for t, v in pts if v is not None]
        if coords:
            points = " ".join(f"{x},{y}" for x, y in coords)
            marks = coords if len(coords) <= MAX_MARKS else []
            lines.append(Line(label, COLOURS[i % len(COLOURS)], points, marks))
    ticks = [
        (HEIGHT - PAD_BOTTOM - plot_h * f, f"{top * f:g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    return Chart(lines, ticks)
