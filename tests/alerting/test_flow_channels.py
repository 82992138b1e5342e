"""A flow incident's notices as each channel family receives them (issue 66): one mail-flow
problem of several monitors (IMAPS, POP3S and a SASL submission on one host, a round trip on it
joining later) told once when it opens, once when it changes, once when it ends, and each
message describes the flow incident (every monitor with its state and cause, every country and
cause, what changed, its console page), not one member monitor. Pagers (PagerDuty, Opsgenie,
Alertmanager) see one alert for the flow incident, opened and closed under one key.

The history is played once for the module against real PostgreSQL, the rig's SMTP relay and SMS
gateway, loopback receivers speaking each service's contract and Debian's Alertmanager; each test
reads what one family received."""

import html
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext

from controller.jobs.rules import JobIds
from controller.notify import Channel
from controller.notify.outbox import OutboxWorker
from controller.notify.sms import SmsChannel
from controller.settings import ControllerSettings
from shared import embedded
from testkit.alerting.peers import Relay, SmsGateway
from testkit.alerting.receivers import CA, Alertmanager, Receiver
from testkit.alerting.wired import wired_alerter
from testkit.serving import http_client
from tests.alerting.conftest import (
    LINKS,
    MONITOR_SECRET,
    RELAY_PASSWORD,
    RELAY_USER,
    Clock,
    Rig,
    email_channel,
)
from tests.alerting.test_channels import SECRETS, create, loopback_api, sender
from tests.alerting.test_flow_incidents import dovecot_monitors, failing
from tests.conftest import make_tenant

KINDS = ("webhook", "slack", "teams", "pagerduty", "opsgenie", "telegram", "apprise")
CHAT = "-1001234567890"
NAMES = ("IMAPS", "POP3S", "Submission")
FAILS = {"imap": "refused", "pop3": "refused", "submission": "temporary", "trip": "refused"}
UP = {"DE": "up", "FR": "up", "US": "up"}


@dataclass
class Told:
    """What the history left at each receiver, and the flow incident's ids."""

    receivers: dict[str, Receiver]
    relay: Relay
    sms: SmsGateway
    alerts: list[list[dict[str, Any]]]  # Alertmanager's alerts after each notice
    flow_id: str
    opening: tuple[str, str]  # the opening outage: monitor and incident public ids
    sent: list[int]  # notices delivered after each step


async def _play(rig: Rig, ms: dict[str, asyncpg.Record], first: int, rounds: Any) -> None:
    for i, by_name in enumerate(rounds):
        for name, m in ms.items():
            await rig.round(m, first + i, by_name[name])
        await rig.alerter.burst()


def _no_outbox(**_: Any) -> OutboxWorker:
    raise AssertionError("the history sends through its own worker, every channel in one")


@pytest.fixture(scope="module")
async def told(
    alert_pool: asyncpg.Pool,
    events_js: JetStreamContext,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> AsyncIterator[Told]:
    tenant = await make_tenant(alert_pool)
    clock = Clock()
    relay = Relay(embedded.free_port(), users={RELAY_USER: RELAY_PASSWORD})
    await relay.start()
    receivers = {k: Receiver(k, SECRETS.get(k, "")) for k in KINDS}
    for r in receivers.values():
        await r.__aenter__()
    alerter = wired_alerter(
        alert_pool,
        events_js,
        job_ids,
        notify_reminder_minutes=30,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=0,
        links=LINKS,
        clock=clock,
    )
    try:
        async with (
            SmsGateway() as sms,
            loopback_api(settings, alert_pool) as api,
        ):
            with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
                # Apprise's requests trusts REQUESTS_CA_BUNDLE: the receivers' CA.
                CA.cert_pem.write_to_path(f"{tmp}/ca.pem")
                mp.setenv("REQUESTS_CA_BUNDLE", f"{tmp}/ca.pem")
                async with Alertmanager(tmp) as am, http_client(base_url=am.url) as am_api:
                    rig = Rig(
                        alert_pool,
                        events_js,
                        tenant,
                        relay,
                        sms,
                        clock,
                        alerter,
                        _no_outbox,
                        job_ids,
                    )
                    yield await _history(rig, receivers, am, am_api, api, settings)
    finally:
        for r in receivers.values():
            await r.__aexit__(None, None, None)
        await relay.stop()
        async with alert_pool.acquire() as conn:
            await conn.execute("DELETE FROM monitors")
            await conn.execute("TRUNCATE result_rows, result_details, result_rollups, event_outbox")


async def _history(
    rig: Rig,
    receivers: dict[str, Receiver],
    am: Alertmanager,
    am_api: httpx.AsyncClient,
    api: httpx.AsyncClient,
    settings: ControllerSettings,
) -> Told:
    ms = await dovecot_monitors(rig)
    ids = [str(m["public_id"]) for m in ms.values()]
    for kind, r in receivers.items():
        extra = {"chatId": CHAT} if kind == "telegram" else {}
        await create(api, rig.tenant, kind, r.url, monitorIds=ids, **extra)
    await create(api, rig.tenant, "alertmanager", am.url, monitorIds=ids)
    channels: dict[str, Channel] = {
        "email": email_channel(rig.relay),
        "sms": SmsChannel(rig.sms.url, timeout_s=5),
        **sender(rig, settings).channels(),
    }

    async def deliver() -> int:
        w = OutboxWorker(rig.pool, channels, clock=rig.clock, backoff_s=0)
        return await w.burst()

    alerts: list[list[dict[str, Any]]] = []
    sent: list[int] = []

    async def step() -> None:
        sent.append(await deliver())
        alerts.append((await am_api.get("/api/v2/alerts", params={"active": "true"})).json())

    # IMAPS and POP3S refused from DE and FR, the submission's SASL login temporary: one
    # flow incident, told once its group wait is over.
    down = {n: failing(FAILS[n]) for n in ("imap", "pop3", "submission")}
    await _play(rig, ms, 0, [{**down, "trip": UP}] * 2)
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    await step()
    # The round trip joins, failing from every country: one change notice.
    everywhere = {"DE": "refused", "FR": "refused", "US": "refused"}
    await _play(rig, ms, 2, [{**down, "trip": everywhere}] * 2)
    await step()
    # Every monitor recovers: one recovery.
    await _play(rig, ms, 4, [dict.fromkeys(ms, UP)] * 3)
    await step()
    (flow,) = await rig.fetch(
        "SELECT public_id, id FROM flow_incidents WHERE organization_id = $1", rig.tenant.org_id
    )
    (opening,) = await rig.fetch(
        "SELECT m.public_id AS monitor, i.public_id AS incident FROM incidents i"
        " JOIN monitors m ON m.id = i.monitor_id WHERE i.flow_incident_id = $1"
        " ORDER BY i.id LIMIT 1",
        flow["id"],
    )
    return Told(
        receivers,
        rig.relay,
        rig.sms,
        alerts,
        str(flow["public_id"]),
        (str(opening["monitor"]), str(opening["incident"])),
        sent,
    )


def _describes_the_flow(text: str, *, trip: bool) -> None:
    """Every monitor of the flow incident with its host and port, and every country."""
    for name in NAMES:
        assert name in text, name
    for port in (":993", ":995", ":587"):
        assert port in text
    assert ("Round trip" in text) is trip
    for cc in ("DE", "FR"):
        assert cc in text
    assert MONITOR_SECRET not in text


def _plain(text: str) -> str:
    """A message's text as read: Slack's and Teams' word joiners (which keep clients from
    linking hosts) dropped."""
    return text.replace("\u2060", "")


def _card(message: dict[str, Any]) -> str:
    """A Teams card's text as shown: each block's runs joined, one block a line."""
    card = message["attachments"][0]["content"]
    lines = ["".join(i["text"] for i in b["inlines"]) for b in card["body"]]
    lines += [a["url"] for a in card.get("actions", [])]
    return _plain("\n".join(lines))


async def test_three_notices_per_channel_whatever_the_number_of_monitors(told: Told) -> None:
    """Ten recipients (e-mail, SMS, eight channels) told three times: opened, changed, ended."""
    assert told.sent == [10, 10, 10]


async def test_email_describes_every_monitor_country_and_change(told: Told) -> None:
    subjects = [m["Subject"] for m in told.relay.messages]
    assert subjects[0] == "[mailprobe] DOWN: IMAPS and 2 more"
    assert subjects[1] == "[mailprobe] DOWN, new countries, new monitor: IMAPS and 3 more"
    assert subjects[2].startswith("[mailprobe] Recovered: IMAPS and 3 more after")
    bodies = []
    for m in told.relay.messages:
        part = m.get_body(("plain",))
        assert part is not None
        bodies.append(part.get_content())
    _describes_the_flow(bodies[0], trip=False)
    assert "connection refused" in bodies[0] and "421 4.3.2" in bodies[0]
    _describes_the_flow(bodies[1], trip=True)
    assert "Changed: new countries, new monitor" in bodies[1] and "US" in bodies[1]
    assert f"https://mailprobe.example.test/console/incidents/{told.flow_id}" in bodies[2]


async def test_sms_names_the_flow_its_causes_and_countries(told: Told) -> None:
    texts = [b["text"] for b in told.sms.bodies]
    assert len(texts) == 3
    assert texts[0].startswith("mailprobe DOWN: IMAPS and 2 more:")
    assert "DE, FR" in texts[0]
    assert "DE, FR, US" in texts[1]


async def test_the_webhook_event_carries_the_flow_incident(told: Told) -> None:
    events = [s.json() for s in told.receivers["webhook"].delivered]
    assert [e["kind"] for e in events] == ["down", "down", "recovered"]
    first, changed, ended = events
    for e in events:
        assert e["flow"]["id"] == told.flow_id
        assert (e["monitor"]["id"], e["incident"]["id"]) == told.opening
        assert e["consoleUrl"] == f"https://mailprobe.example.test/console/incidents/{told.flow_id}"
    assert first["flow"]["monitorCount"] == 3
    assert {m["name"] for m in first["flow"]["monitors"]} == set(NAMES)
    assert {m["state"] for m in first["flow"]["monitors"]} == {"down"}
    assert first["flow"]["countries"] == ["DE", "FR"]
    assert {m["causeKind"] for m in first["flow"]["monitors"]} == {"refused", "temporary"}
    assert len(first["flow"]["causes"]) == 2 and first["flow"]["changes"] == []
    assert changed["flow"]["monitorCount"] == 4 and changed["flow"]["countries"] == [
        "DE",
        "FR",
        "US",
    ]
    assert changed["flow"]["changes"] == ["new countries", "new monitor"]
    assert ended["state"] == "up" and ended["flow"]["endedAt"] is not None
    assert {m["state"] for m in ended["flow"]["monitors"]} == {"up"}


def _chat(told: Told, kind: str) -> list[str]:
    """Each message a chat family received, as its reader sees the text."""
    r = told.receivers[kind]
    if kind == "slack":
        return [_plain(s.body.decode()) for s in r.delivered]
    if kind == "teams":
        return [_card(s.json()) for s in r.delivered]
    if kind == "telegram":
        return [html.unescape(re.sub(r"<[^<>]*>", "", t)) + t for t in r.open_alerts[CHAT]]
    return [s.json()["title"] + "\n" + s.json()["message"] for s in r.delivered]


def _lists_every_monitor(family: list[str], *, link: bool = True) -> None:
    assert len(family) == 3
    _describes_the_flow(family[0], trip=False)
    _describes_the_flow(family[1], trip=True)
    assert "Monitors: 3 (3 down)" in family[0] and "Monitors: 4 (4 down)" in family[1]
    assert "Changed: new countries, new monitor" in family[1]
    assert "DE, FR, US" in family[1]
    assert "Recovered: IMAPS and 3 more" in family[2]


@pytest.mark.parametrize("kind", ["slack", "teams", "telegram", "apprise"])
async def test_each_chat_family_lists_every_monitor_and_links_the_incident(
    told: Told, kind: str
) -> None:
    family = _chat(told, kind)
    _lists_every_monitor(family)
    assert f"/console/incidents/{told.flow_id}" in family[0]


def _key(told: Told) -> str:
    monitor, incident = told.opening
    return f"mailprobe-{monitor}-{incident}"


async def test_pagerduty_holds_one_alert_for_the_flow_incident_and_resolves_it(
    told: Told,
) -> None:
    key = _key(told)
    r = told.receivers["pagerduty"]
    assert r.closed == [key] and not r.open_alerts
    pd = [s.json() for s in r.delivered]
    assert [d["event_action"] for d in pd] == ["trigger", "trigger", "resolve"]
    assert {d["dedup_key"] for d in pd} == {key}
    details = pd[1]["payload"]["custom_details"]
    assert "Round trip" in details["Each monitor"] and details["Countries"] == "DE, FR, US"
    assert pd[1]["links"][0]["href"].endswith(f"/console/incidents/{told.flow_id}")


async def test_opsgenie_holds_one_alert_for_the_flow_incident_and_closes_it(told: Told) -> None:
    key = _key(told)
    r = told.receivers["opsgenie"]
    assert r.closed == [key] and not r.open_alerts
    created = [s.json() for s in r.delivered if s.path == "/v2/alerts"]
    assert [c["alias"] for c in created] == [key, key]
    assert "Round trip" in created[1]["description"]
    assert created[1]["details"]["countries"] == "DE, FR, US"


async def test_alertmanager_holds_one_alert_for_the_flow_incident_and_ends_it(told: Told) -> None:
    """Debian's Alertmanager: one active alert while open (its labels the opening outage's,
    the same after the change), none after the recovery."""
    _, incident = told.opening
    first, changed, ended = told.alerts
    assert len(first) == 1 and len(changed) == 1 and ended == []
    assert first[0]["labels"]["incident"] == incident
    assert changed[0]["labels"] == first[0]["labels"]
    assert "Round trip" in changed[0]["annotations"]["monitors"]
    assert "IMAPS" in first[0]["annotations"]["monitors"]
    assert changed[0]["annotations"]["flow_incident"] == told.flow_id
    assert changed[0]["annotations"]["countries"] == "DE, FR, US"
