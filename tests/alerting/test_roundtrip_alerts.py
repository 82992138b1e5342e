"""The alerter treats a round-trip monitor like the other kinds (issue 14): its own error kinds
(`spam`, `not_delivered`, `slow_delivery`) open an incident when most countries fail for the
rounds it takes, with a cause a person acts on, and mails say which kind of monitor it is."""

import asyncpg
import httpx
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


NOT_DELIVERED = {"DE": "not_delivered", "FR": "not_delivered", "US": "not_delivered"}


async def test_not_delivered_rounds_back_sending_off_and_tell_the_owners_once(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """Issue 22: three rounds in a row whose message never arrived slow the monitor's sending
    to a trickle and queue one `delivery` notice per recipient, not one per round; a delivered
    round confirms the mailbox and ends it; a new `to` starts the record over. The old code
    kept mailing a `to` that never received anything, and told nobody."""
    m = await rig.monitor(kind="roundtrip", config=CONFIG, name="Mail arrives")

    async def record() -> list[asyncpg.Record]:
        return await rig.fetch("SELECT * FROM roundtrip_delivery WHERE monitor_id = $1", m["id"])

    async def notices() -> list[asyncpg.Record]:
        return [r for r in await rig.outbox_rows(m) if r["kind"] == "delivery"]

    await rig.rounds(m, 0, [NOT_DELIVERED, NOT_DELIVERED])
    (d,) = await record()
    assert (d["not_delivered"], d["notified"], d["confirmed_at"]) == (2, False, None)
    assert await notices() == []
    await rig.rounds(m, 2, [NOT_DELIVERED, NOT_DELIVERED, NOT_DELIVERED])
    (d,) = await record()
    assert (d["not_delivered"], d["notified"]) == (5, True)
    told = await notices()
    assert sorted(n["channel"] for n in told) == ["email", "sms"]
    assert "sending slowed" in told[0]["subject"] and MONITOR_SECRET not in told[0]["body_text"]
    url = f"/api/roundtrip-monitors/{m['public_id']}/delivery"
    r = await api.get(url, headers=rig.tenant.auth())
    assert (r.json()["state"], r.json()["allowedPerHour"]) == ("backed_off", 1)

    await rig.rounds(m, 5, [{"DE": "spam", "FR": "not_delivered", "US": "not_delivered"}])
    (d,) = await record()
    assert (d["not_delivered"], d["notified"]) == (0, False)
    assert d["confirmed_at"] == rig.at(5)
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET config = jsonb_set(config, '{to}', '\"box@customer.test\"')"
            " WHERE id = $1",
            m["id"],
        )
    (d,) = await record()  # over again, from the change (issue 66: results before it count not)
    assert (d["confirmed_at"], d["not_delivered"], d["notified"]) == (None, 0, False)
    assert d["mailbox_at"] is not None
    assert len(await notices()) == 2
