"""A public status page's content: what its HTML, JSON summary and feeds are all drawn from
(`status._content` builds it, `status_cache` keeps it), key by key as the template reads it."""

from datetime import date, datetime
from typing import TypedDict

from controller.web.console.uptime_bars import Bar


class CountryDot(TypedDict):
    country: str
    state: str


class Service(TypedDict):
    """A monitor as the page shows it (`hostname`: None unless the page shows hostnames)."""

    name: str
    hostname: str | None
    kind: str
    state: str
    stateLabel: str
    countries: list[CountryDot]
    uptime: float | None  # percent over the bars' days; None: no checks
    # The first day with data when it is within the bars' days (uptime_bars.covered_since):
    # the uptime covers only the days since.
    uptimeSince: date | None
    bars: list[Bar]


class Incident(TypedDict):
    monitor: str
    startedAt: datetime
    endedAt: datetime | None
    cause: str
    countries: int  # how many countries saw it


class NoticeUpdate(TypedDict):
    state: str
    body: str
    at: datetime


class Notice(TypedDict):
    id: str
    title: str
    impact: str
    createdAt: datetime
    resolvedAt: datetime | None
    updates: list[NoticeUpdate]  # newest first


class Maintenance(TypedDict):
    services: str
    startsAt: datetime
    endsAt: datetime
    inProgress: bool
    recurring: bool


class PageContent(TypedDict):
    title: str
    slug: str
    updatedAt: datetime
    monitors: list[Service]
    overall: str
    incidents: list[Incident]
    notices: list[Notice]
    maintenance: list[Maintenance]
    days: int
    historyDays: int
