"""The console's pure rendering helpers as tables: chart lines that break at outages and bands
behind them, the one date format, host names that wrap at their labels, history bars."""

from datetime import UTC, date, datetime, timedelta

import pytest

from controller.statuspages import uptime_bars
from controller.web.console import charts, dates, hosts

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("values", "segments", "why"),
    [
        ([10, 20, 30, 40], 1, "an unbroken run"),
        ([10, None, 30, 40], 2, "a bucket without a passing check breaks the line"),
        ([10, None, None, 40], 2, "however long the outage"),
        ([None, None, None, 40], 1, "a lone point is its own segment"),
    ],
)
def test_a_line_breaks_where_no_check_passed(
    values: list[int | None], segments: int, why: str
) -> None:
    pts = [(T0 + i * MIN, None if v is None else float(v)) for i, v in enumerate(values)]
    chart = charts.line_chart([("DE", pts)], T0, T0 + 4 * MIN, gap=1.5 * MIN)
    (line,) = chart.lines
    assert len(line.segments) == segments, why


def test_a_step_longer_than_the_gap_breaks_the_line_too() -> None:
    pts = [(T0, 10.0), (T0 + MIN, 12.0), (T0 + 5 * MIN, 11.0)]
    (line,) = charts.line_chart([("DE", pts)], T0, T0 + 6 * MIN, gap=1.5 * MIN).lines
    assert len(line.segments) == 2


def test_bands_are_clipped_to_the_range_and_an_outage_alone_is_a_chart() -> None:
    bands = [
        (T0 - 10 * MIN, T0 + MIN, "maintenance", "maintenance"),  # starts before the range
        (T0 + 2 * MIN, T0 + 3 * MIN, "down", "3 failed, 0 passed"),
        (T0 + 20 * MIN, T0 + 30 * MIN, "incident", "after the range"),
    ]
    chart = charts.line_chart([("DE", [(T0, None)])], T0, T0 + 10 * MIN, bands)
    assert not chart.empty and not chart.lines
    assert [b.kind for b in chart.bands] == ["maintenance", "down"]
    assert float(chart.bands[0].x) == charts.PAD_LEFT
    assert charts.line_chart([], T0, T0 + MIN).empty


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime(2026, 11, 23, 8, 53, 40, tzinfo=UTC), "2026-11-23 08:53 UTC"),
        ("2027-12-25T08:49:40.000Z", "2027-12-25 08:49 UTC"),
        ("2026-11-23T09:53:00+01:00", "2026-11-23 08:53 UTC"),
        (datetime(2026, 11, 23, 8, 53), "2026-11-23 08:53 UTC"),  # naive: UTC
        (None, "—"),
        ("", "—"),
        ("not a time", "not a time"),
    ],
)
def test_one_date_format(value: datetime | str | None, shown: str) -> None:
    assert dates.shown(value) == shown
    rendered = str(dates.when(value))
    assert rendered.endswith(f">{shown}</time>") or rendered == shown


def test_when_escapes_what_is_not_a_time_and_marks_up_what_is() -> None:
    assert str(dates.when("<b>")) == "&lt;b&gt;"
    assert str(dates.when("2027-12-25T08:49:40Z")) == (
        '<time datetime="2027-12-25T08:49:40.000Z" title="2027-12-25T08:49:40.000Z">'
        "2027-12-25 08:49 UTC</time>"
    )


def test_host_names_break_after_dots_and_hyphens_and_stay_escaped() -> None:
    assert str(hosts.host("mx1.eu-central.example")) == "mx1.<wbr>eu-<wbr>central.<wbr>example"
    assert str(hosts.host("<script>.x")) == "&lt;script&gt;.<wbr>x"
    assert str(hosts.host(None)) == ""


@pytest.mark.parametrize(
    ("name", "port", "shown"),
    [
        (
            "127.0.0.1",
            54466,
            '<span class="nowrap">127.0.0.1<span class="port">:54466</span></span>',
        ),
        ("81.2.69.170", None, '<span class="nowrap">81.2.69.170</span>'),
        (
            "2001:db8::1",
            993,
            '<span class="nowrap">2001:db8::1<span class="port">:993</span></span>',
        ),
        (
            "mx1.eu-central.example",
            25,
            'mx1.<wbr>eu-<wbr>central.<wbr><span class="nowrap">example'
            '<span class="port">:25</span></span>',
        ),
        ("localhost", 587, '<span class="nowrap">localhost<span class="port">:587</span></span>'),
        ("<b>.x", 1, '&lt;b&gt;.<wbr><span class="nowrap">x<span class="port">:1</span></span>'),
    ],
)
def test_an_address_and_a_port_are_never_cut(name: str, port: int | None, shown: str) -> None:
    """An address is one unbreakable run; a port stays on the line of the address or of the
    name's last label."""
    assert str(hosts.host(name, port)) == shown


def test_history_bars_per_hour_and_per_day() -> None:
    hour = T0
    bars = uptime_bars.hourly({hour: (3, 3), hour - timedelta(hours=1): (10, 0)}, hour, 48)
    assert len(bars) == 48
    assert [b["level"] for b in bars[-3:]] == ["none", "up", "down"]
    assert bars[-1]["day"] == "2026-11-23 08:00 UTC" and bars[-1]["down"] == 3
    days = uptime_bars.daily({date(2026, 11, 23): (96, 4)}, date(2026, 11, 23), 90)
    assert len(days) == 90 and days[-1]["level"] == "warn" and days[-1]["share"] == 96.0


def test_a_chart_says_the_days_or_the_times_along_its_axis() -> None:
    """Report charts (days) carry dates, a day's chart times of day; first at the left edge,
    last at the right."""
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    week = charts.line_chart([("tls", [(start, 1.0)])], start, start + timedelta(days=7))
    assert [text for _, text in week.x_ticks] == [
        "20 Nov",
        "22 Nov",
        "24 Nov",
        "25 Nov",
        "27 Nov",
    ]
    assert week.x_ticks[0][0] == charts.PAD_LEFT and week.x_ticks[-1][0] == charts.WIDTH - 4
    day = charts.line_chart([("DE", [(start, 1.0)])], start, start + timedelta(hours=4))
    assert [text for _, text in day.x_ticks] == ["12:00", "13:00", "14:00", "15:00", "16:00"]
