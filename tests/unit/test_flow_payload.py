"""What a flow incident's notice tells notification channels (controller.notify.flow_texts
`flow_facts`, controller.notify.channel_kinds): bounded lists, each monitor's state, and the
webhook event's `flow` added as a defaulted field (older and newer controllers read each
other's stored events). Pure."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import msgspec
import pytest

from controller.monitors.store import Monitor
from controller.notify import channel_kinds
from controller.notify.channel_kinds import Event, MonitorFacts
from controller.notify.flow_texts import Part, flow_facts
from shared.messages import SmtpConfig

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
FLOW = UUID("7d7a6f1c-0000-4000-8000-000000000009")


def monitor(n: int) -> Monitor:
    return Monitor(
        id=n,
        public_id=UUID(int=n),
        organization_id=1,
        customer_id=1,
        type="smtp",
        name=f"Relay\x85{n}",  # a line break never reaches a channel
        hostname=f"mx{n}.example.test",
        port=587,
        status="active",
        check_interval=60,
        timeout_seconds=10,
        allowed_country_codes=None,
        config=SmtpConfig(),
        notification_email=None,
        notification_phone_number=None,
        mail_domain=None,
        next_due_at=None,
        created_at=T0,
        updated_at=T0,
        last_checked_at=None,
        config_as_sent={},
    )


def part(n: int, ended: bool = False, cc: tuple[str, ...] = ("DE",)) -> Part:
    end = T0 + timedelta(minutes=5) if ended else None
    return Part(monitor(n), T0 + timedelta(seconds=n), end, "refused", f"refused {n % 2}", cc)


@pytest.mark.parametrize(
    ("parts", "evidence", "shown", "states", "countries", "causes", "findings"),
    [
        ([part(1)], [], 1, ["down"], ["DE"], ["refused 1"], 0),
        (
            [part(1, cc=("US", "DE")), part(2, ended=True, cc=("FR",))],
            ["TLS-RPT: 3 failed"],
            2,
            ["down", "up"],
            ["DE", "FR", "US"],
            ["refused 0", "refused 1"],
            1,
        ),
        # many monitors and findings: the first FLOW_MONITORS and EVIDENCE, counted in full
        (
            [part(n) for n in range(1, 121)],
            [f"finding {n}" for n in range(30)],
            channel_kinds.FLOW_MONITORS,
            ["down"] * channel_kinds.FLOW_MONITORS,
            ["DE"],
            ["refused 0", "refused 1"],
            channel_kinds.EVIDENCE,
        ),
    ],
)
def test_flow_facts_name_every_country_and_cause_and_bound_their_lists(
    parts: list[Part],
    evidence: list[str],
    shown: int,
    states: list[str],
    countries: list[str],
    causes: list[str],
    findings: int,
) -> None:
    f = flow_facts(FLOW, parts, T0, None, ["new monitor"], evidence)
    assert (f.id, f.monitor_count, f.evidence_count) == (str(FLOW), len(parts), len(evidence))
    assert [m.state for m in f.monitors] == states and len(f.monitors) == shown
    assert (f.countries, f.causes, len(f.evidence)) == (countries, causes, findings)
    assert all(m.name.startswith("Relay ") for m in f.monitors)


def test_a_message_lists_the_first_ten_monitors_then_how_many_more() -> None:
    f = flow_facts(FLOW, [part(n) for n in range(1, 13)], T0, None)
    e = Event(
        id="e",
        kind="down",
        state="down",
        at="2026-11-27T10:01:00.000Z",
        summary="[mailprobe] DOWN: Relay 1 and 11 more",
        monitor=MonitorFacts(str(UUID(int=1)), "Relay 1", "smtp", "mx1.example.test", 587),
        incident=None,
        console_url=None,
        flow=f,
    )
    text = channel_kinds.plain_text(e)
    assert "Monitors: 12 (12 down)" in text
    assert "Relay 10 (SMTP mx10.example.test:587): down; refused 0 [DE]" in text
    assert "Relay 11" not in text and "and 2 more" in text


def flow_event(f: channel_kinds.FlowFacts) -> Event:
    return Event(
        id="e",
        kind="down",
        state="down",
        at="2026-11-27T10:01:00.000Z",
        summary="[mailprobe] DOWN",
        monitor=MonitorFacts(str(UUID(int=1)), "Relay 1", "smtp", "mx1.example.test", 587),
        incident=None,
        console_url=None,
        flow=f,
    )


@pytest.mark.parametrize(
    ("parts", "told"),
    [
        # beyond the FLOW_MONITORS listed, the count of those down is of every monitor
        ([part(n, ended=n <= 10) for n in range(1, 121)], "Monitors: 120 (110 down)"),
        ([part(n, ended=n > 60) for n in range(1, 121)], "Monitors: 120 (60 down)"),
        ([part(n, ended=True) for n in range(1, 4)], "Monitors: 3\n"),
    ],
)
def test_a_message_counts_every_monitor_down_not_only_those_listed(
    parts: list[Part], told: str
) -> None:
    f = flow_facts(FLOW, parts, T0, None)
    assert told.replace("\\n", "\n") in channel_kinds.plain_text(flow_event(f)) + "\n"


def test_a_notice_stored_before_the_down_count_counts_the_monitors_it_lists() -> None:
    f = msgspec.structs.replace(flow_facts(FLOW, [part(1), part(2, ended=True)], T0, None))
    older = msgspec.structs.replace(f, down_count=None)
    assert "Monitors: 2 (1 down)" in channel_kinds.plain_text(flow_event(older))


class OlderEvent(msgspec.Struct, rename="camel", frozen=True):
    """The webhook event as controllers before flow incidents' facts wrote and read it."""

    id: str
    kind: str
    state: str
    at: str
    summary: str
    monitor: MonitorFacts
    incident: channel_kinds.IncidentFacts | None
    console_url: str | None
    version: int = 1
    severity: str | None = None
    details: str | None = None


def test_the_flow_field_is_added_with_a_default_both_ways() -> None:
    older = OlderEvent(
        "e", "down", "down", "t", "s", MonitorFacts("m", "n", "smtp", "h", None), None, None
    )
    assert msgspec.json.decode(msgspec.json.encode(older), type=Event).flow is None
    newer = msgspec.structs.replace(
        msgspec.json.decode(msgspec.json.encode(older), type=Event),
        flow=flow_facts(FLOW, [part(1)], T0, None),
    )
    back = msgspec.json.decode(channel_kinds.encode(newer), type=OlderEvent)
    assert back.summary == "s"
