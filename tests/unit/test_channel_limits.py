"""Every channel's request keeps its service's documented limits on every field as sent (after
escaping and word joiners), for 200-character hostile monitor names: each request is answered
by the loopback receivers' own checks (testkit/alerting/receivers.py), which refuse what the
services refuse (Slack `invalid_blocks`, Teams' 28 KB, Opsgenie's 422, PagerDuty's 400,
Telegram's "message is too long" and "can't parse entities"). Pure: no server is started."""

import html
import json
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec
import pytest

from controller.notify import channel_kinds
from controller.notify.channel_kinds import (
    Event,
    FlowFacts,
    FlowMonitor,
    IncidentFacts,
    MonitorFacts,
)
from controller.notify.limits import cut, cut_escaped, cut_html, html_units, units
from testkit.alerting.receivers import Receiver

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRETS = {"pagerduty": "R0UTINGKEY", "opsgenie": "og-key", "telegram": "123:bot"}
KINDS = ("slack", "teams", "pagerduty", "opsgenie", "telegram")


def _200(pattern: str) -> str:
    return (pattern * 200)[:200]


# Names the API takes (one line, at most 200 characters), each hostile to some channel.
HOSTILE = {
    "mrkdwn": _200("*_~`<>&|@here <!channel> "),
    "linkish": _200("a.b:c@d"),  # a word joiner after each "." ":" and before "@"
    "html": _200('&amp;&lt;<b>&#x27;"</a>'),
    "astral": _200("\U0001f600\U0001d518"),  # two UTF-16 units each
    "invisible": _200("\u202e\u200f\u200b\u200d\ufeffx."),  # RTL override, RLM, zero widths
    "mixed": _200("\U0001f525 & <@U123>: *down*. "),
}
CAUSE = _200("smtp: 421 <mx.example>: try later & again.\n") * 3
DETAILS = (_200("Finding: 1024-bit key <b>&amp;</b> at mx.example:25\n\u202e") * 10)[:2000]


def _event(name: str, kind: str) -> Event:
    monitor = MonitorFacts(
        "7d7a6f1c-0000-4000-8000-000000000001", name, "smtp", ("h" * 60 + ".") * 4 + "x", 25
    )
    incident = IncidentFacts(
        "7d7a6f1c-0000-4000-8000-000000000002",
        "2025-03-01T11:00:00.000Z",
        "2025-03-01T11:30:00.000Z" if kind == "recovered" else None,
        CAUSE,
        "smtp",
        ["DE", "FR", "US"],
    )
    notice = kind == "credentials"
    return Event(
        id="e" * 32,
        kind=kind,
        state="notice" if notice else channel_kinds.STATE_OF[kind],
        at="2025-03-01T12:00:00.000Z",
        summary=f"[mailprobe] {'Credentials rejected' if notice else 'DOWN'}: {name}",
        monitor=monitor,
        incident=None if notice or kind == "test" else incident,
        console_url="https://mailprobe.example.test/console/monitors/x",
        severity="warning" if notice else None,
        details=DETAILS if notice else None,
    )


def _answers(kind: str, event: Event) -> list[tuple[int, bytes]]:
    receiver = Receiver(kind, SECRETS.get(kind, ""))
    base = {"slack": "https://h/services/T/B/X", "teams": "https://h/x?sig=teamsSecretSig"}
    url = base.get(kind) or channel_kinds.DEFAULT_URL[kind]
    out = []
    for req in channel_kinds.requests(kind, event, url, SECRETS.get(kind), NOW, "-1001234567890"):
        parts = urlsplit(req.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k.lower(): v for k, v in req.headers.items()}
        out.append(receiver.answer("POST", target, headers, req.body))
    return out


@pytest.mark.parametrize("event_kind", ["down", "recovered", "credentials", "test"])
@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_keeps_its_services_limits_for_a_hostile_200_character_name(
    kind: str, name: str, event_kind: str
) -> None:
    event = _event(HOSTILE[name], event_kind)
    for status, said in _answers(kind, event):
        delivered, _ = channel_kinds.verdict(kind, event, status)
        assert delivered, (status, said)


@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
def test_slacks_header_is_cut_after_its_word_joiners(name: str) -> None:
    """The header holds at most 150 characters as sent (a 132+ character name was 154-160
    once joiners went in after the cut), and is still the name's start, ending in "…"."""
    body = json.loads(
        channel_kinds.request("slack", _event(HOSTILE[name], "down"), "u", None, NOW).body
    )
    header = body["blocks"][0]["text"]["text"]
    escaped = header.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert units(escaped) <= channel_kinds.SLACK_HEADER
    assert header.startswith("[mailprobe] DOWN:") and header.endswith("…")
    assert not re.search(r"&(?:a|am|amp|l|lt|g|gt)?…$", body["text"])  # no escape split


def test_the_teams_payload_stays_below_28_kb_with_every_text_at_its_longest() -> None:
    for name in HOSTILE.values():
        for event_kind in ("down", "credentials"):
            e = _event(name, event_kind)
            assert len(channel_kinds.request("teams", e, "u", None, NOW).body) <= 28_000


def _flow(name: str, kind: str) -> Event:
    """A flow incident's notice with every list at its longest: FLOW_MONITORS monitors with
    hostile names and long causes, every change, EVIDENCE findings of 300 characters."""
    monitors = [
        FlowMonitor(
            f"7d7a6f1c-0000-4000-8000-{n:012d}",
            name,
            "imap",
            ("h" * 60 + ".") * 4 + "x",
            993,
            "down",
            CAUSE,
            "refused",
            ["DE", "FR", "US"],
        )
        for n in range(channel_kinds.FLOW_MONITORS)
    ]
    flow = FlowFacts(
        id="7d7a6f1c-0000-4000-8000-000000000009",
        started_at="2025-03-01T11:00:00.000Z",
        ended_at=None,
        countries=["DE", "FR", "US"],
        causes=[CAUSE] * 5,
        monitor_count=400,
        monitors=monitors,
        changes=["new countries", "new monitor", "new cause"],
        evidence_count=100,
        evidence=[_200("TLS-RPT <b>&amp; ") + name[:100]] * channel_kinds.EVIDENCE,
    )
    return msgspec.structs.replace(_event(name, kind), flow=flow)


@pytest.mark.parametrize("event_kind", ["down", "recovered"])
@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
@pytest.mark.parametrize("kind", KINDS)
def test_a_flow_incidents_notice_keeps_every_services_limits(
    kind: str, name: str, event_kind: str
) -> None:
    """Every monitor, cause, change and finding of a flow incident as long as they come: each
    service's limits still hold (Slack's 10 fields a section, Teams' 28 KB, ...)."""
    event = _flow(HOSTILE[name], event_kind)
    for status, said in _answers(kind, event):
        delivered, _ = channel_kinds.verdict(kind, event, status)
        assert delivered, (status, said)
    if kind == "teams":
        assert len(channel_kinds.request("teams", event, "u", None, NOW).body) <= 28_000


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("ab\U0001f600cd", 4, "ab…"),  # the emoji counts two: it does not fit beside "…"
        ("\U0001f600\U0001f600", 3, "\U0001f600…"),
    ],
)
def test_cut_counts_utf16_and_marks_the_cut(text: str, limit: int, expected: str) -> None:
    assert cut(text, limit) == expected


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("a &amp; b", 9, "a &amp; b"),
        ("ab&amp;cdef", 5, "ab…"),  # "&am" would be a broken escape
        ("ab&amp;cdef", 8, "ab&amp;…"),
        ("&lt;&lt;&lt;", 6, "&lt;…"),
    ],
)
def test_cut_escaped_never_splits_an_escape(text: str, limit: int, expected: str) -> None:
    assert cut_escaped(text, limit) == expected


def test_cut_html_counts_the_parsed_text_and_closes_its_tags() -> None:
    text = "<b>" + html.escape("<&>" * 3000) + '</b>\n<a href="https://x/?a=1&amp;b=2">Open</a>'
    shown = cut_html(text, 4096)
    assert html_units(shown) == 4096 and shown.endswith("…</b>")
    assert not re.search(r"&[#0-9A-Za-z]*…", shown)
    assert cut_html("<b>short &amp; whole</b>", 4096) == "<b>short &amp; whole</b>"
