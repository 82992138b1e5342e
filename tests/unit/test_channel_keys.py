"""Each channel kind's idempotency key (docs/alerts.md): the same notice sent again (another
attempt, later) carries the same key, so its receiver drops the repeat; another notice carries
another. Kinds whose service takes no key say so here, so a change on either side is seen."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from controller.notify import Notification, channel_kinds
from controller.notify.channel_kinds import Event, IncidentFacts, MonitorFacts, Request
from controller.notify.email import EmailChannel

FIRST = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
RETRIED = FIRST + timedelta(minutes=7)


def _event(key: str, kind: str = "down", incident: str = "inc-1") -> Event:
    return Event(
        id=channel_kinds.event_id(key),
        kind=kind,
        state=channel_kinds.STATE_OF[kind],
        at="2026-11-27T08:00:00.000Z",
        summary="[mailprobe] DOWN: Relay",
        monitor=MonitorFacts("mon-1", "Relay", "smtp", "mx.example.com", 25),
        incident=IncidentFacts(incident, "2026-11-27T07:58:00.000Z", None, "refused", "x", ["DE"]),
        console_url=None,
    )


def _body(r: Request) -> dict[str, object]:
    body: dict[str, object] = json.loads(r.body)
    return body


# The key a receiver drops a repeat by, as it reads it from the request.
KEYS: dict[str, Callable[[Request], object]] = {
    "webhook": lambda r: (r.headers["X-Mailprobe-Event"], _body(r)["id"]),
    "pagerduty": lambda r: _body(r)["dedup_key"],
    "opsgenie": lambda r: _body(r)["alias"],
    "alertmanager": lambda r: json.dumps(json.loads(r.body)[0]["labels"], sort_keys=True),
}
NO_KEY = {"slack", "teams", "telegram", "apprise"}


def test_every_kind_is_either_keyed_or_listed_as_taking_no_key() -> None:
    assert set(KEYS) | NO_KEY == set(channel_kinds.KINDS)
    assert not set(KEYS) & NO_KEY


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_a_notice_sent_again_later_carries_the_same_key_and_another_notice_another(
    kind: str,
) -> None:
    def key(event: Event, at: datetime) -> object:
        return KEYS[kind](channel_kinds.request(kind, event, "https://r.test", "s3cret", at))

    down = _event("down:1:DE")
    assert key(down, FIRST) == key(down, RETRIED)
    other = _event("down:2:DE", incident="inc-2")  # the next incident's down notice
    assert key(down, FIRST) != key(other, FIRST)


def test_an_e_mail_sent_again_carries_the_same_message_id() -> None:
    channel = EmailChannel("smtp://relay.test", "mailprobe@example.test")

    def message_id(key: str) -> str:
        note = Notification("oncall@example.test", "DOWN", "text", None, key)
        return str(channel.message(note)["Message-ID"])

    assert message_id("down:1:email") == message_id("down:1:email")
    assert message_id("down:1:email") != message_id("recovered:1:email")


# The key a receiver groups one incident's notices by (its alert, its group), as it reads it
# from the request: the opening's, the change's and the resolve's must be one.
GROUP: dict[str, Callable[[Request], object]] = {
    "pagerduty": lambda r: _body(r)["dedup_key"],
    "opsgenie": lambda r: _body(r).get("alias") or r.url.split("/v2/alerts/")[1].split("/")[0],
    "alertmanager": lambda r: json.dumps(json.loads(r.body)[0]["labels"], sort_keys=True),
}


@pytest.mark.parametrize("kind", sorted(GROUP))
def test_one_flow_incidents_open_change_and_resolve_carry_one_key(kind: str) -> None:
    """A flow incident's notices name the outage that opened it (channel_store `fan_out`):
    its opening, a change and its recovery are one alert at the receiver."""

    def key(event: Event) -> object:
        return GROUP[kind](channel_kinds.request(kind, event, "https://r.test", "s3cret", FIRST))

    opening = _event("flow:7:down:ch:1")
    change = _event("flow:7:changed-1:ch:1")
    end = _event("flow:7:end:ch:1", "recovered")
    assert key(opening) == key(change) == key(end)
    assert key(opening) != key(_event("flow:8:down:ch:1", incident="inc-2"))


def test_an_incidents_follow_up_e_mail_replies_to_its_first() -> None:
    """The outbox names the first notice an e-mail follows up (`thread_key`): the follow-up's
    In-Reply-To and References are that notice's Message-ID; the first has neither."""
    channel = EmailChannel("smtp://relay.test", "mailprobe@example.test")
    first_key = "flow:7:down:email:oncall@example.test"
    first = channel.message(Notification("oncall@example.test", "DOWN", "t", None, first_key))
    again = Notification("oncall@example.test", "DOWN", "t", None, first_key, thread=first_key)
    for sent in (first, channel.message(again)):
        assert "In-Reply-To" not in sent and "References" not in sent
    for later in ("flow:7:changed-1:email:oncall@example.test", "flow:7:end:email:x@y.test"):
        note = Notification("oncall@example.test", "Recovered", "t", None, later, thread=first_key)
        msg = channel.message(note)
        assert msg["In-Reply-To"] == msg["References"] == first["Message-ID"]
        assert msg["Message-ID"] != first["Message-ID"]
