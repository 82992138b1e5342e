"""The alerter treats a round-trip monitor like the other kinds (issue 14): its own error kinds
(`spam`, `not_delivered`, `slow_delivery`) open an incident when most countries fail for the
rounds it takes, with a cause a person acts on, and mails say which kind of monitor it is."""

import pytest

from tests.alerting.conftest import MONITOR_SECRET, UP, Rig

CONFIG = {
    "send": {"auth": {"user": "probe", "pass": MONITOR_SECRET}},
    "to": "probe@customer.test",
    "receive": {"hostname": "imap.customer.test", "user": "probe", "password": MONITOR_SECRET},
}


@pytest.mark.parametrize(
    ("kind", "label", "words"),
    [
        ("spam", "mail in spam", "in a spam folder"),
        ("not_delivered", "mail not delivered", "did not arrive in the mailbox"),
        ("slow_delivery", "mail slow", "more slowly than the monitor allows"),
    ],
)
async def test_round_trip_failures_open_an_incident_with_their_cause(
    rig: Rig, kind: str, label: str, words: str
) -> None:
    m = await rig.monitor(kind="roundtrip", config=CONFIG, name="Mail arrives")
    failing = {"DE": kind, "FR": kind, "US": "up"}
    await rig.rounds(m, 0, [UP, failing, failing])
    (incident,) = await rig.incidents(m)
    assert incident["cause_kind"] == kind and words in incident["cause"]
    assert incident["countries"] == ["DE", "FR"]
    assert await rig.outbox().burst() == 2
    (mail,) = rig.relay.messages
    text = mail.get_body(("plain",))
    assert text is not None
    assert "Mail arrives (Round-trip smtp.customer.test:587) is down." in text.get_content()
    assert MONITOR_SECRET not in rig.relay.keep.raw[0].decode()
    (sms,) = rig.sms.bodies
    assert label in sms["text"]

    await rig.rounds(m, 3, [UP, UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] is not None
